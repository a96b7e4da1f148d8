"""What a ping costs next to a heartbeat: signed pings/s and signed heartbeats/s at saturation.

Starts ``tassium-collector serve`` (SQLite in a temporary directory; with ``--postgres`` also
against a throw-away PostgreSQL server run with its durability settings at their defaults,
unlike the tests' server), enrolls ``--workers`` workers, then saturates it from
``--clients`` processes of ``--threads`` keep-alive connections each: first with signed
pings, then with signed heartbeats (an agent's body: three containers and the machine's
facts), for ``--seconds`` each, in one run against the same collector. Every request is
signed before the clock starts, so the load generator spends its time sending. Prints
requests/s of each kind and their ratio, per database.

    .venv/bin/python -m bench.pings [--workers 200] [--seconds 10] [--postgres]
"""

import argparse
import http.client
import multiprocessing
import threading
import time
from datetime import timedelta
from urllib.parse import urlsplit

from bench.served import DurablePostgres, served_collector
from protocol.heartbeat import SIGNATURE_HEADER
from protocol.times import utcnow
from tests.factories import FakeWorker, machine

# Signed requests, one list per sending connection: (body, signature).
Jobs = list[list[tuple[bytes, str]]]


def enrolled(url: str, count: int) -> list[FakeWorker]:
    workers = [FakeWorker() for _ in range(count)]
    for worker in workers:
        worker.enroll_at(url).raise_for_status()  # the owner signs the challenge
    return workers


def signed(worker: FakeWorker, body: dict) -> tuple[bytes, str]:
    raw, headers = worker.signed(body)
    return raw, headers[SIGNATURE_HEADER]


def ping_jobs(workers: list[FakeWorker], senders: int) -> Jobs:
    """One ping per worker, sent again and again: the collector keeps the latest per worker,
    so a repeated ping costs what a new one does. Its time stays within max_skew for minutes."""
    pings = [signed(w, w.ping_body()) for w in workers]
    return [pings[i::senders] for i in range(senders)]


def heartbeat_jobs(workers: list[FakeWorker], senders: int, per_worker: int) -> Jobs:
    """Each worker's heartbeats, a tenth of a second apart and ending now (each must be later
    than the last), all on one sender so that they arrive in order."""
    containers = [
        {"containerName": f"app-{i}", "port": f"0.0.0.0:{8000 + i}->3000/tcp", "cpuPercent": 1.5}
        for i in range(3)
    ]
    first = utcnow() - timedelta(seconds=per_worker / 10 + 1)
    jobs: Jobs = [[] for _ in range(senders)]
    for index, worker in enumerate(workers):
        job = jobs[index % senders]
        for i in range(per_worker):
            ts = first + timedelta(seconds=i / 10)
            job.append(signed(worker, worker.heartbeat_body(ts, containers, system=machine())))
    # Interleave each sender's workers, as a fleet's heartbeats interleave.
    return [
        [job[w * per_worker + i] for i in range(per_worker) for w in range(len(job) // per_worker)]
        for job in jobs
    ]


def _send(url: str, path: str, job, start: float, deadline: float, cycle: bool, out: list):
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    ok = failed = 0
    last = start
    time.sleep(max(0.0, start - time.time()))
    i = 0
    while time.time() < deadline and (cycle or i < len(job)):
        body, signature = job[i % len(job)]
        i += 1
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature}
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            failed += 1
            continue
        if response.status == 200:
            ok += 1
        else:
            failed += 1
        last = time.time()
    connection.close()
    out.append((ok, failed, last))


def _client(args) -> list:
    url, path, jobs, start, seconds, cycle = args
    out: list = []
    threads = [
        threading.Thread(target=_send, args=(url, path, job, start, start + seconds, cycle, out))
        for job in jobs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def saturate(url: str, path: str, jobs: Jobs, clients: int, seconds: float, cycle: bool):
    """Requests/s answered 200, and the count of any others (there should be none)."""
    start = time.time() + 2  # every process and thread ready before the clock starts
    shares = [(url, path, jobs[i::clients], start, seconds, cycle) for i in range(clients)]
    with multiprocessing.Pool(clients) as pool:
        results = [r for share in pool.map(_client, shares) for r in share]
    ok = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    elapsed = max(r[2] for r in results) - start
    return ok / elapsed, failed


def measure(url: str, args) -> tuple[float, float]:
    senders = args.clients * args.threads
    workers = enrolled(url, args.workers)
    pings = ping_jobs(workers, senders)
    # Enough heartbeats for the whole phase at well above the rates seen on this machine.
    per_worker = max(10, int(4000 * args.seconds / args.workers))
    heartbeats = heartbeat_jobs(workers, senders, per_worker)
    ping_rate, ping_failed = saturate(
        url, "/heartbeat/ping", pings, args.clients, args.seconds, True
    )
    beat_rate, beat_failed = saturate(
        url, "/heartbeat", heartbeats, args.clients, args.seconds, False
    )
    if ping_failed or beat_failed:
        raise SystemExit(f"refused: {ping_failed} pings, {beat_failed} heartbeats")
    return ping_rate, beat_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=2, help="load generator processes")
    parser.add_argument("--threads", type=int, default=16, help="connections per process")
    parser.add_argument("--processes", type=int, default=2, help="collector processes")
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    args = parser.parse_args()

    results = {}
    with served_collector(processes=args.processes) as url:
        results["SQLite"] = measure(url, args)
    if args.postgres:
        server = DurablePostgres()
        server.start()
        try:
            database_url = server.fresh_database()
            with served_collector(processes=args.processes, database_url=database_url) as url:
                results["PostgreSQL"] = measure(url, args)
        finally:
            server.stop()

    print(
        f"{args.workers} enrolled workers, {args.processes} collector processes, "
        f"{args.clients}×{args.threads} keep-alive connections, {args.seconds:g} s each"
    )
    print(f"{'database':<12}{'pings/s':>10}{'heartbeats/s':>14}{'ratio':>8}")
    for database, (pings, beats) in results.items():
        print(f"{database:<12}{pings:>10.0f}{beats:>14.0f}{pings / beats:>8.1f}")


if __name__ == "__main__":
    main()
