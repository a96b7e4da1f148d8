"""Heartbeat ingestion: the served collector against the database's own ceiling, in one run.

Enrolls ``--workers`` workers by inserting their rows and public keys straight into the
database (as enrollment leaves them), starts ``tassium-collector serve``, and sends signed
heartbeats as an agent sends them (three containers, the agent's facts and the machine's)
from ``--clients`` processes of ``--threads`` keep-alive connections; each worker always on
the same connection, so its heartbeats arrive in order, each later than the last. Every
request is signed before the clock starts. Phases, one after the other on one collector:

- first heartbeats: one per worker as fast as it goes (each opens a window), which also
  brings the fleet to its steady state, where a heartbeat extends an open window;
- saturation for ``--seconds``: heartbeats/s answered 200 in time, p50/p99 latency;
- each of ``--rates``: an open-loop sender at that rate (latency counted from when each
  request was due, so a collector falling behind shows as latency), p50/p99, the rate
  achieved, and whether it kept up.

On PostgreSQL (a throw-away server with fsync and synchronous_commit at their defaults: a
heartbeat acknowledged must be committed) the collector is then stopped and pgbench runs,
on the same server and database with as many connections as the collector had clients,
three scripts for a random one of the same workers:

- *as at d1ce3ab*: the statements one heartbeat that extends a window issued when the issue
  was filed (copied from PostgreSQL's log): BEGIN, the worker row locked, the open window
  locked, its update, the containers deleted and re-inserted, the metrics point, the worker
  update, COMMIT;
- *as issued now*: the same, taken from the server's log in this run: the collector under
  test serves two heartbeats of one worker on a database of its own that logs every
  statement (``--statements`` prints them);
- *minimal*: the same effect in one statement (the worker update guarded by the heartbeat's
  order, the window extended within the gap, the container list written anew and the
  metrics point, as data-modifying CTEs): the ceiling the collector is measured against;
- *same, no containers*: that statement without the container list, for a fleet whose
  containers' figures do not move between heartbeats.

Every heartbeat sent reports its containers' CPU with another value, as a running fleet's
agents do, so each one's container list is written anew.

Prints every figure and the collector's saturated rate over each ceiling. SQLite has no
such ceiling; its rates are printed alone. Beside each rate, the CPU time per heartbeat
(per transaction for pgbench) of the collector's processes and of PostgreSQL's, which stays
comparable when the machine is shared with other work and the rates do not.

    .venv/bin/python -m bench.ingest [--workers 10000] [--seconds 10] [--rates 500,1000]
                                     [--postgres-only | --sqlite-only]
"""

import argparse
import os
import statistics
import subprocess
import tempfile
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.heartbeat_load import Measurement, Row, enroll_directly
from bench.pg_ceiling import (
    AS_AT_D1CE3AB,
    MINIMAL,
    MINIMAL_WITH_CONTAINERS,
    Ceiling,
    add_twins,
    capture_statements,
    checkpoints_so_far,
    equivalent,
    pgbench,
    postmaster,
)
from bench.served import DurablePostgres, served_collector


def serve(database_url: str, args):
    """The collector under test, as the options ask; yields its URL and process."""
    return served_collector(
        with_process=True,
        processes=args.processes,
        database_url=database_url,
        access_log=args.access_log,
    )


def alternate(measurement: Measurement, server: DurablePostgres, database: str, args) -> list:
    """``--rounds`` pairs of a saturation phase and the equivalent transaction's pgbench
    ceiling, one right after the other (the collector idle meanwhile, pgbench on the twin
    workers of ``add_twins``): the machine is shared, and its speed drifts within a run by
    more than the differences measured, so each ratio compares figures taken moments apart.
    Returns (collector/s, ceiling tps) for each round."""
    name, script = equivalent(args, twins=True)
    rounds = []
    for number in range(1, args.rounds + 1):
        achieved = measurement.saturation(f"saturation, round {number}")
        rounds.append((achieved, pgbench(server, database, name, script, args).tps))
    return rounds


def at_rates(server: DurablePostgres, database: str, args) -> list[Ceiling]:
    """The equivalent transaction alone at each fixed rate (on the twin workers, the
    collector idle): the database's own latencies on this machine, beside the collector's."""
    name, script = equivalent(args, twins=True)
    return [pgbench(server, database, f"{rate:g}/s", script, args, rate) for rate in args.rates]


def on_postgres(keys: list[bytes], args) -> tuple[list[Row], list[Ceiling], list, list]:
    server = DurablePostgres()
    server.start()
    try:
        issued = capture_statements(server, keys[0], args)
        if args.statements:
            print(f"a heartbeat's statements, as a pgbench script:\n{issued}")
        database_url = server.fresh_database()
        enroll_directly(database_url, keys)
        if args.rounds:
            add_twins(database_url, len(keys))
        database = database_url.rsplit("/", 1)[1]
        with serve(database_url, args) as (url, process):
            pids = {"collector": process.pid, "postgres": postmaster(server)}
            measurement = Measurement(
                "PostgreSQL", url, pids, keys, args, checkpoints=lambda: checkpoints_so_far(server)
            )
            rows = measurement.phases()
            rounds = alternate(measurement, server, database, args)
            alone = at_rates(server, database, args) if args.rounds else []
        # The collector stopped: pgbench has the machine to itself, as the collector had.
        ceilings = [
            pgbench(server, database, "as at d1ce3ab", AS_AT_D1CE3AB, args),
            pgbench(server, database, "as issued now", issued, args),
            pgbench(server, database, "minimal", MINIMAL_WITH_CONTAINERS, args),
            pgbench(server, database, "same, no containers", MINIMAL, args),
        ]
        return rows, ceilings, rounds, alone
    finally:
        server.stop()


def on_sqlite(keys: list[bytes], args) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="tassium-bench-ingest-") as directory:
        database_url = f"sqlite:///{directory}/collector.db"
        # Served first: ``serve`` creates the schema (migrate_on_start), then the rows go in.
        with serve(database_url, args) as (url, process):
            enroll_directly(database_url, keys)
            return Measurement("SQLite", url, {"collector": process.pid}, keys, args).phases()


def print_rows(database: str, rows: list[Row]) -> None:
    names = list(rows[0].cpu_ms)
    print(f"\n{database}")
    print(
        f"  {'phase':<18}{'offered/s':>10}{'answered/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
        + "".join(f"{f'{name} CPU ms':>19}" for name in names)
        + "  note"
    )
    for row in rows:
        offered = f"{row.offered:g}" if row.offered is not None else "-"
        print(
            f"  {row.phase:<18}{offered:>10}{row.achieved:>12.0f}"
            f"{row.p50_ms:>9.1f}{row.p99_ms:>9.1f}"
            + "".join(f"{row.cpu_ms[name]:>19.2f}" for name in names)
            + f"  {row.note}"
        )


def print_rounds(rounds: list[tuple[float, float]], equivalent_name: str) -> None:
    print(f"\n  {'alternating':<22}{'collector/s':>12}{equivalent_name + ' tps':>26}{'ratio':>8}")
    ratios = []
    for number, (achieved, tps) in enumerate(rounds, start=1):
        ratios.append(achieved / tps)
        print(f"  {f'round {number}':<22}{achieved:>12.0f}{tps:>26.0f}{ratios[-1]:>8.2f}")
    print(f"  {'median':<22}{'':>12}{'':>26}{statistics.median(ratios):>8.2f}")


def print_alone(alone: list[Ceiling], equivalent_name: str) -> None:
    print(f"\n  {equivalent_name + ', pgbench alone':<34}{'tps':>8}{'p50 ms':>9}{'p99 ms':>9}")
    for ceiling in alone:
        print(
            f"  {ceiling.name:<34}{ceiling.tps:>8.0f}{ceiling.p50_ms:>9.1f}{ceiling.p99_ms:>9.1f}"
        )


def code_version() -> str:
    def git(*command: str) -> str:
        result = subprocess.run(["git", *command], capture_output=True, text=True)
        return result.stdout.strip()

    dirty = " with uncommitted changes" if git("status", "--porcelain", "--", "collector") else ""
    return git("rev-parse", "--short", "HEAD") + dirty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=10000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument(
        "--rates",
        type=lambda text: [float(r) for r in text.split(",") if r],
        default=[500.0, 1000.0],
        help="fixed rates, heartbeats/s, comma-separated",
    )
    parser.add_argument("--clients", type=int, default=2, help="load generator processes")
    parser.add_argument("--threads", type=int, default=16, help="connections per process")
    parser.add_argument("--processes", type=int, default=2, help="collector processes")
    parser.add_argument(
        "--steady-containers",
        action="store_true",
        help="the containers' figures the same at every heartbeat (as the issue measured)",
    )
    parser.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="the collector's access log (off, as a fleet of this size would run it)",
    )
    parser.add_argument(
        "--statements", action="store_true", help="print the statements a heartbeat issues"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="on PostgreSQL, saturation and the equivalent pgbench ceiling alternated this "
        "many times (the ratio's median printed)",
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--postgres-only", action="store_true")
    only.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()

    started = time.monotonic()
    load = os.getloadavg()[0]
    keys = [Ed25519PrivateKey.generate().private_bytes_raw() for _ in range(args.workers)]
    postgres = sqlite = None
    if not args.sqlite_only:
        postgres = on_postgres(keys, args)
    if not args.postgres_only:
        sqlite = on_sqlite(keys, args)

    print(
        f"code {code_version()}; {os.cpu_count()} cores, load average {load:.1f} at the start "
        f"and {os.getloadavg()[0]:.1f} at the end; {args.workers} enrolled workers, "
        f"{args.processes} collector processes (access log "
        f"{'on' if args.access_log else 'off'}), containers' figures "
        f"{'steady' if args.steady_containers else 'moving'}, "
        f"{args.clients}×{args.threads} keep-alive connections "
        f"(pgbench: -c {args.clients * args.threads} -j {args.clients}), "
        f"{args.seconds:g} s a phase; {time.monotonic() - started:.0f} s in all"
    )
    if postgres is not None:
        rows, ceilings, rounds, alone = postgres
        print_rows("PostgreSQL (fsync, synchronous_commit on)", rows)
        saturated = next(r.achieved for r in rows if r.phase == "saturation")
        print(
            f"\n  {'pgbench ceiling':<22}{'statements':>10}{'tps':>10}{'latency ms':>12}"
            f"{'postgres CPU ms':>19}{'collector/ceiling':>19}"
        )
        for ceiling in ceilings:
            print(
                f"  {ceiling.name:<22}{ceiling.statements:>10}{ceiling.tps:>10.0f}"
                f"{ceiling.latency_ms:>12.1f}"
                f"{ceiling.cpu_ms:>19.2f}{saturated / ceiling.tps:>19.2f}"
            )
        if rounds:
            print_rounds(rounds, equivalent(args)[0])
        if alone:
            print_alone(alone, equivalent(args)[0])
    if sqlite is not None:
        print_rows("SQLite (WAL)", sqlite)


if __name__ == "__main__":
    main()
