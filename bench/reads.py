"""What the worker reads cost at fleet scale: ``GET /workers`` pages with ``--workers``
workers (the first page with its total, a page at the end of the fleet by offset and the same
page by wallet with ``after``), a ``/metrics`` scrape (which counts the workers online), and
one worker's uptime with a year of records (``--records`` closed windows over 365 days): the
last 30 days and the whole year, each a page of records with totals over all of them.

Seeds the database directly (one INSERT … SELECT for the fleet), then starts ``tassium-collector
serve`` (2 processes) on it and reads over real HTTP; each figure is the median of 10 requests.
SQLite in a temporary directory; with ``--postgres`` also a throw-away PostgreSQL server.

    .venv/bin/python -m bench.reads [--workers 1000000] [--records 10000] [--postgres]
"""

import argparse
import statistics
import time
from datetime import timedelta

import httpx

from bench.fleet import insert_in_batches, wallet
from bench.served import on_each_database, served_collector
from collector.store import migrations
from collector.store.db import is_postgres
from collector.store.models import OpenWindow, UptimeRecord, Worker
from protocol.times import format_timestamp, utcnow
from tests.factories import connected

PAGE = 200
CHUNK = 5000


def seed(url: str, workers: int, records: int) -> str:
    """The fleet (half of it heard within the last half hour), and one worker with
    ``records`` windows spread over the last year; returns that worker's wallet."""
    now = utcnow()
    with connected(url) as database:
        migrations.migrate(database)
        heard = Worker.last_heartbeat_at.db_value(now)
        with database.atomic():
            if is_postgres():
                database.execute_sql(
                    "INSERT INTO workers (wallet_address, created_at, last_heartbeat_at) "
                    "SELECT '0x' || lpad(to_hex(i), 40, '0'), %s, "
                    "%s - mod(i, 3600) * interval '1 second' FROM generate_series(0, %s) i",
                    (heard, heard, workers - 1),
                )
            else:
                database.execute_sql(
                    "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                    "INSERT INTO workers (wallet_address, created_at, last_heartbeat_at) "
                    "SELECT printf('0x%040x', i), ?, datetime(?, '-' || (i % 3600) || ' seconds') "
                    "FROM n",
                    (workers - 1, heard, heard),
                )
        busy = wallet(workers)
        Worker.create(wallet_address=busy, created_at=now - timedelta(days=400))
        step = timedelta(days=365) / records
        rows = [
            {
                "worker": busy,
                "time_from": now - timedelta(days=365) + k * step,
                "time_to": now - timedelta(days=365) + k * step + step / 3,
            }
            for k in range(records)
        ]
        insert_in_batches(UptimeRecord, rows, CHUNK)
        OpenWindow.create(worker=busy, start_time=now - step / 2, end_time=now)
    return busy


def timed(url: str, path: str, **params) -> tuple[float, int]:
    """The median seconds of 10 requests, and the answer's bytes."""
    times = []
    for _ in range(10):
        started = time.perf_counter()
        answer = httpx.get(url + path, params=params, timeout=120)
        times.append(time.perf_counter() - started)
        answer.raise_for_status()
    return statistics.median(times), len(answer.content)


def measure(url: str, workers: int, busy: str) -> dict:
    now = utcnow()
    deep = workers - PAGE
    offset, _ = timed(url, "/workers", limit=PAGE, offset=deep)
    after, _ = timed(url, "/workers", limit=PAGE, after=wallet(deep - 1))
    month, month_bytes = timed(
        url, f"/workers/{busy}/uptime", **{"from": format_timestamp(now - timedelta(days=30))}
    )
    year, year_bytes = timed(
        url, f"/workers/{busy}/uptime", **{"from": format_timestamp(now - timedelta(days=366))}
    )
    return {
        "first": timed(url, "/workers", limit=PAGE)[0],
        "offset": offset,
        "after": after,
        "scrape": timed(url, "/metrics")[0],
        "month": month,
        "month_bytes": month_bytes,
        "year": year,
        "year_bytes": year_bytes,
    }


def run(database_url: str, args: argparse.Namespace) -> dict:
    busy = seed(database_url, args.workers, args.records)
    with served_collector(database_url=database_url, processes=2) as url:
        return measure(url, args.workers, busy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=10_000, help="one worker's, in a year")
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    args = parser.parse_args()

    results = on_each_database(lambda url: run(url, args), postgres=args.postgres)

    ms = 1000
    print(f"{args.workers:,} workers, pages of {PAGE}; one worker with {args.records:,} records")
    print(
        f"{'database':<12}{'page 1':>8}{'by offset':>11}{'by after':>10}{'scrape':>8}"
        f"{'uptime 30 d':>18}{'uptime 1 y':>18}"
    )
    for name, r in results.items():
        print(
            f"{name:<12}{r['first'] * ms:>6.1f}ms{r['offset'] * ms:>9.1f}ms"
            f"{r['after'] * ms:>8.1f}ms{r['scrape'] * ms:>6.1f}ms"
            f"{r['month'] * ms:>8.1f}ms {r['month_bytes'] / 1024:>5.1f} KB"
            f"{r['year'] * ms:>8.1f}ms {r['year_bytes'] / 1024:>5.1f} KB"
        )


if __name__ == "__main__":
    main()
