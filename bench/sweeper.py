"""The sweeper on a fleet gone quiet: ``--windows`` idle open windows (1,000,000 by default),
all silent past the gap, closed by one sweep pass, as the interval job and
``tassium-collector sweep`` run it; then a second pass with nothing to close, which is what
most passes of a healthy fleet are.

Seeds the database directly (bulk inserts), on SQLite in a temporary directory and, with
``--postgres``, on a throw-away PostgreSQL server.

    .venv/bin/python -m bench.sweeper [--windows 1000000] [--postgres]
"""

import argparse
import time
from datetime import timedelta

from bench.fleet import wallet_batches
from bench.served import on_each_database
from collector.store import migrations
from collector.store.models import OpenWindow, UptimeRecord, Worker
from collector.uptime.sweeper import sweep_pass
from protocol.times import utcnow
from tests.factories import connected

CHUNK = 10_000
GAP = timedelta(minutes=30)


def run(url: str, windows: int) -> dict:
    now = utcnow()
    with connected(url) as database:
        migrations.migrate(database)
        for wallets in wallet_batches(windows, CHUNK):
            with database.atomic():
                Worker.insert_many([{"wallet_address": w} for w in wallets]).execute()
                OpenWindow.insert_many(
                    [
                        {
                            "worker": w,
                            "start_time": now - timedelta(hours=3),
                            "end_time": now - timedelta(hours=1),
                        }
                        for w in wallets
                    ]
                ).execute()
        started = time.perf_counter()
        swept = sweep_pass(gap=GAP, retention=timedelta(days=30), now=now)
        closing = time.perf_counter() - started
        started = time.perf_counter()
        again = sweep_pass(gap=GAP, retention=timedelta(days=30), now=now)
        idle = time.perf_counter() - started
        records = UptimeRecord.select().count()
    if swept.closed != windows or again.closed != 0 or records != windows:
        raise SystemExit(f"closed {swept.closed}, then {again.closed}; {records} records")
    return {"closing": closing, "idle": idle}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=1_000_000)
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    args = parser.parse_args()
    results = on_each_database(lambda url: run(url, args.windows), postgres=args.postgres)
    print(f"{args.windows:,} idle open windows, one sweep pass closing them all, then one more")
    print(f"{'database':<12}{'closing pass':>14}{'windows/s':>12}{'next pass':>12}")
    for name, r in results.items():
        print(
            f"{name:<12}{r['closing']:>13.1f}s{args.windows / r['closing']:>12,.0f}"
            f"{r['idle'] * 1000:>10.1f}ms"
        )


if __name__ == "__main__":
    main()
