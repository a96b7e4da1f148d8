"""What receipts cost: heartbeat ingestion with and without them, in one run.

Two collectors are served side by side, each on a database of its own holding the same
enrolled workers (``--workers``), alike in every setting but ``receipts``: one signs a
receipt for every credited heartbeat (and keeps it on the window), the other does not. Each
gets its first heartbeats (opening every window: the steady state of a running fleet), then
saturation phases of ``--seconds`` alternate between them, ``--rounds`` times, so each pair
is measured moments apart on this shared machine. Printed: each round's heartbeats/s, the
CPU per heartbeat of the collector's processes, and the median ratio of the rate with
receipts to the rate without (the target is at least 0.90: a receipt costs less than 10 %).

    .venv/bin/python -m bench.receipts [--workers 2000] [--seconds 10] [--rounds 3]
                                       [--postgres-only | --sqlite-only]
"""

import argparse
import contextlib
import os
import statistics
import tempfile
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.heartbeat_load import Measurement, Row, enroll_directly
from bench.ingest import code_version
from bench.served import DurablePostgres, served_collector

SIDES = ("with receipts", "without")


def side_by_side(urls: dict[str, str], keys: list[bytes], args, enroll_after: bool) -> list:
    """Serve a collector per side on its database, measure alternately; the rows of each
    round, (side, Row) in the order they ran."""
    with contextlib.ExitStack() as stack:
        measurements = {}
        for side, receipts in zip(SIDES, (True, False), strict=True):
            url, process = stack.enter_context(
                served_collector(
                    with_process=True,
                    processes=args.processes,
                    database_url=urls[side],
                    access_log=False,
                    receipts=receipts,
                )
            )
            if enroll_after:  # SQLite: ``serve`` made the schema, then the rows go in
                enroll_directly(urls[side], keys)
            measurements[side] = Measurement(side, url, {"collector": process.pid}, keys, args)
        for measurement in measurements.values():
            first = measurement.run(measurement.phase("first heartbeats", len(keys), None, None))
            measurement.saturation_bound = max(measurement.saturation_bound, 5 * first)
        ran = []
        for number in range(1, args.rounds + 1):
            # Which side goes first alternates too: a machine warming or cooling within a
            # round favours neither.
            order = SIDES if number % 2 else tuple(reversed(SIDES))
            for side in order:
                measurements[side].saturation(f"round {number}")
                ran.append((number, side, measurements[side].rows[-1]))
        return ran


def on_postgres(keys: list[bytes], args) -> list:
    server = DurablePostgres()
    server.start()
    try:
        urls = {side: server.fresh_database() for side in SIDES}
        for url in urls.values():
            enroll_directly(url, keys)
        return side_by_side(urls, keys, args, enroll_after=False)
    finally:
        server.stop()


def on_sqlite(keys: list[bytes], args) -> list:
    with tempfile.TemporaryDirectory(prefix="tassium-bench-receipts-") as directory:
        urls = {side: f"sqlite:///{directory}/{i}.db" for i, side in enumerate(SIDES)}
        return side_by_side(urls, keys, args, enroll_after=True)


def report(database: str, ran: list[tuple[int, str, Row]]) -> None:
    print(f"\n{database}")
    print(f"  {'round':<8}{'side':<16}{'heartbeats/s':>14}{'p99 ms':>9}{'collector CPU ms':>18}")
    rates: dict[int, dict[str, float]] = {}
    for number, side, row in ran:
        rates.setdefault(number, {})[side] = row.achieved
        print(
            f"  {number:<8}{side:<16}{row.achieved:>14.0f}{row.p99_ms:>9.1f}"
            f"{row.cpu_ms['collector']:>18.3f}"
        )
    ratios = [r[SIDES[0]] / r[SIDES[1]] for r in rates.values()]
    cpu = {side: [row.cpu_ms["collector"] for _, s, row in ran if s == side] for side in SIDES}
    added = statistics.median(cpu[SIDES[0]]) - statistics.median(cpu[SIDES[1]])
    print(
        f"  with/without, per round: {', '.join(f'{r:.2f}' for r in ratios)}; "
        f"median {statistics.median(ratios):.2f} (target ≥ 0.90); "
        f"collector CPU per heartbeat {added * 1000:+.0f} µs with receipts (medians)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2, help="load generator processes")
    parser.add_argument("--threads", type=int, default=16, help="connections per process")
    parser.add_argument("--processes", type=int, default=2, help="processes per collector")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--postgres-only", action="store_true")
    only.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    args.steady_containers = False  # as bench/ingest.py: a running fleet's figures move

    started, load = time.monotonic(), os.getloadavg()[0]
    keys = [Ed25519PrivateKey.generate().private_bytes_raw() for _ in range(args.workers)]
    results = {}
    if not args.sqlite_only:
        results["PostgreSQL (fsync, synchronous_commit on)"] = on_postgres(keys, args)
    if not args.postgres_only:
        results["SQLite"] = on_sqlite(keys, args)
    print(
        f"code {code_version()}; {os.cpu_count()} cores, load average {load:.1f} at the start "
        f"and {os.getloadavg()[0]:.1f} at the end; {args.workers} enrolled workers, "
        f"{args.processes} processes per collector, {args.clients}×{args.threads} "
        f"connections, {args.seconds:g} s a phase; {time.monotonic() - started:.0f} s in all"
    )
    for database, ran in results.items():
        report(database, ran)


if __name__ == "__main__":
    main()
