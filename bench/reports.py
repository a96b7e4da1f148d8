"""What reports cost at fleet scale: the fleet CSV of ``--workers`` workers streamed from the
served collector (time, rows/s, and the serving processes' memory before and at its peak),
a page of the fleet report as JSON, and one worker's 30-day report with a year of records.

Seeds the database directly (bulk inserts; each worker gets ``--records`` closed windows in
the last 30 days and an open one), then starts ``tassium-collector serve`` on it and reads
over real HTTP. SQLite in a temporary directory; with ``--postgres`` also a throw-away
PostgreSQL server.

    .venv/bin/python -m bench.reports [--workers 100000] [--records 4] [--postgres]
"""

import argparse
import contextlib
import statistics
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx

from bench.fleet import insert_in_batches, wallet, wallet_batches
from bench.served import OPERATOR, on_each_database, served_collector
from collector.store import migrations
from collector.store.models import OpenWindow, UptimeRecord, Worker
from protocol.times import utcnow
from tests.factories import connected

CHUNK = 5000
YEAR_OF_RECORDS = 365 * 24  # one window an hour, for a year


def seed(url: str, workers: int, records: int) -> str:
    """The fleet, and one worker with a year of hourly records; returns that worker."""
    now = utcnow()
    with connected(url) as database:
        migrations.migrate(database)
        for wallets in wallet_batches(workers, CHUNK):
            with database.atomic():
                Worker.insert_many(
                    [
                        {
                            "wallet_address": w,
                            "created_at": now - timedelta(days=40),
                            "last_heartbeat_at": now - timedelta(minutes=2),
                        }
                        for w in wallets
                    ]
                ).execute()
                rows = []
                for w in wallets:
                    for r in range(records):
                        start = now - timedelta(days=30) + timedelta(days=7 * r)
                        rows.append(
                            {"worker": w, "time_from": start, "time_to": start + timedelta(days=5)}
                        )
                UptimeRecord.insert_many(rows).execute()
                OpenWindow.insert_many(
                    [
                        {
                            "worker": w,
                            "start_time": now - timedelta(hours=3),
                            "end_time": now - timedelta(minutes=2),
                        }
                        for w in wallets
                    ]
                ).execute()
        busy = wallet(workers)
        Worker.create(
            wallet_address=busy,
            created_at=now - timedelta(days=400),
            last_heartbeat_at=now - timedelta(hours=1),
        )
        hourly = [
            {
                "worker": busy,
                "time_from": now - timedelta(hours=h + 1),
                "time_to": now - timedelta(hours=h, minutes=20),
            }
            for h in range(1, YEAR_OF_RECORDS)
        ]
        insert_in_batches(UptimeRecord, hourly, CHUNK)
    return busy


def serving_rss(pid: int) -> int:
    """Resident bytes of the collector's processes: gunicorn's master and its workers."""
    total = 0
    for process in [pid, *_children(pid)]:
        try:
            status = Path(f"/proc/{process}/status").read_text()
        except OSError:  # a worker that just exited
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def measure(url: str, pid: int, busy: str) -> dict:
    before = serving_rss(pid)
    peak = [before]
    streaming = threading.Event()
    streaming.set()

    def sample() -> None:
        while streaming.is_set():
            peak[0] = max(peak[0], serving_rss(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    rows = 0
    with httpx.stream(
        "GET", url + "/reports/fleet.csv", params={"period": "30d"}, headers=OPERATOR, timeout=600
    ) as answer:
        answer.raise_for_status()
        for _ in answer.iter_lines():
            rows += 1
    elapsed = time.perf_counter() - started
    streaming.clear()
    sampler.join()

    page_times = []
    for _ in range(5):
        t = time.perf_counter()
        httpx.get(
            url + "/reports/fleet",
            params={"period": "30d", "limit": 1000},
            headers=OPERATOR,
            timeout=60,
        ).raise_for_status()
        page_times.append(time.perf_counter() - t)
    worker_times = []
    for _ in range(10):
        t = time.perf_counter()
        answer = httpx.get(
            f"{url}/reports/workers/{busy}", params={"period": "30d"}, headers=OPERATOR, timeout=60
        )
        answer.raise_for_status()
        worker_times.append(time.perf_counter() - t)
    return {
        "rows": rows - 1,
        "seconds": elapsed,
        "rss_before": before,
        "rss_peak": peak[0],
        "page": statistics.median(page_times),
        "worker": statistics.median(worker_times),
        "worker_bytes": len(answer.content),
    }


def run(database_url: str, args: argparse.Namespace) -> dict:
    busy = seed(database_url, args.workers, args.records)
    with served_collector(database_url=database_url, processes=2, with_process=True) as (
        url,
        process,
    ):
        return measure(url, process.pid, busy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=100_000)
    parser.add_argument("--records", type=int, default=4, help="closed windows per worker")
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    args = parser.parse_args()

    results = on_each_database(lambda url: run(url, args), postgres=args.postgres)

    mib = 1024 * 1024
    print(f"{args.workers:,} workers with {args.records} records each in the last 30 days")
    print(
        f"{'database':<12}{'CSV rows':>10}{'seconds':>9}{'rows/s':>9}{'RSS before':>12}"
        f"{'RSS peak':>10}{'page of 1000':>14}{'1 worker, 1 y':>15}"
    )
    for name, r in results.items():
        print(
            f"{name:<12}{r['rows']:>10,}{r['seconds']:>9.1f}{r['rows'] / r['seconds']:>9,.0f}"
            f"{r['rss_before'] / mib:>10.0f}MB{r['rss_peak'] / mib:>8.0f}MB"
            f"{r['page'] * 1000:>12.0f}ms{r['worker'] * 1000:>13.0f}ms"
        )
    print(
        "RSS: the collector's processes together (master and 2 workers); the 1-year worker's "
        "30-day report is one of "
        f"{YEAR_OF_RECORDS:,} records, {results['SQLite']['worker_bytes']:,} bytes"
    )


if __name__ == "__main__":
    main()
