"""How long a signed heartbeat takes with and without hostile connections held open.

Starts ``tassium-collector serve`` (SQLite in a temporary directory), enrolls some workers,
and times signed heartbeats, each on a new connection as an agent sends them: first on a
quiet collector, then while 50 connections send their headers a byte a second (reopened
whenever the collector closes them) and 1,000 keep-alive connections idle after one
request. The header deadline is a minute here (10 s by default), so that every
hostile connection stays open throughout the measurement. Prints p50 and p99 of both runs
and their ratio, and how many hostile connections were still open at the end.

    .venv/bin/python -m bench.slow_clients [--heartbeats 300] [--slow 50] [--idle 1000]
"""

import argparse
import resource
import statistics
import time

import httpx

from bench.served import served_collector
from collector.serve import raise_open_file_limit
from tests.factories import FakeWorker
from tests.hostile_clients import SlowHeaderClients, idle_keepalive_connections, still_open


def enrolled_workers(url: str, count: int) -> list[FakeWorker]:
    workers = [FakeWorker() for _ in range(count)]
    for worker in workers:
        body = {"walletAddress": worker.wallet, "publicKey": worker.public_key}
        raw, headers = worker.signed(body)
        response = httpx.post(url + "/workers/enroll", content=raw, headers=headers, timeout=30)
        response.raise_for_status()
    return workers


def heartbeat_latencies(url: str, workers: list[FakeWorker], count: int) -> list[float]:
    """Seconds each signed heartbeat took, connection included; every one must be accepted."""
    latencies = []
    for i in range(count):
        worker = workers[i % len(workers)]
        raw, headers = worker.signed(worker.heartbeat_body())
        started = time.perf_counter()
        response = httpx.post(url + "/heartbeat", content=raw, headers=headers, timeout=60)
        latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"heartbeat {i} answered {response.status_code}: {response.text}")
    return latencies


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heartbeats", type=int, default=300)
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--slow", type=int, default=50)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--header-timeout", type=int, default=60)
    args = parser.parse_args()
    if raise_open_file_limit(args.idle + args.slow + 200) < args.idle + args.slow + 200:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        raise SystemExit(f"the open-file limit ({soft}) is too low for this many connections")

    with served_collector(processes=args.processes, header_timeout=args.header_timeout) as url:
        host, port = url.removeprefix("http://").split(":")
        workers = enrolled_workers(url, args.workers)
        heartbeat_latencies(url, workers, 20)  # warm up both processes
        quiet = heartbeat_latencies(url, workers, args.heartbeats)

        with idle_keepalive_connections(host, int(port), args.idle) as idle:
            with SlowHeaderClients(host, int(port), args.slow, reopen=True) as slow:
                time.sleep(2)  # every slow connection is inside its request line
                started = time.monotonic()
                loaded = heartbeat_latencies(url, workers, args.heartbeats)
                elapsed = time.monotonic() - started
                held_slow = slow.open_count
                closed_slow = len(slow.lifetimes)
            # Seen open after the last heartbeat: the crowd was there throughout.
            held_idle = still_open(idle)

    print(f"signed heartbeats, each on a new connection, {args.processes} gevent processes")
    print(f"{'':<38}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    rows = [("quiet", quiet), (f"{args.slow} slow + {args.idle} idle connections", loaded)]
    for name, values in rows:
        p50, p99 = percentile(values, 50), percentile(values, 99)
        print(f"{name:<38}{p50 * 1000:>10.1f}{p99 * 1000:>10.1f}{max(values) * 1000:>10.1f}")
    ratio_50 = percentile(loaded, 50) / percentile(quiet, 50)
    ratio_99 = percentile(loaded, 99) / percentile(quiet, 99)
    print(f"{'ratio (loaded / quiet)':<38}{ratio_50:>10.2f}{ratio_99:>10.2f}")
    print(
        f"after {elapsed:.1f} s of heartbeats: {held_slow} slow connections open "
        f"({closed_slow} closed by the {args.header_timeout} s header deadline and reopened), "
        f"{held_idle} of {args.idle} idle connections still open"
    )


if __name__ == "__main__":
    main()
