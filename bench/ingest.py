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
import json
import math
import multiprocessing
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.fleet import insert_in_batches, wallet
from bench.pings import DurablePostgres
from bench.served import served_collector
from protocol.heartbeat import SIGNATURE_HEADER, encode_public_key, sign
from protocol.times import utcnow
from tests.factories import connected, machine

# Heartbeats signed in advance per second of the saturation phase: this many times the
# rate of the first heartbeats, and at least the floor, so no connection runs out before
# the clock does.
SATURATION_MARGIN = 5
SATURATION_FLOOR = 2000
# Between a worker's consecutive heartbeats: small, so that every phase's timestamps fit
# between ten minutes ago and now.
SPACING = timedelta(milliseconds=10)

CONTAINERS = [
    {
        "containerName": f"app-{i}",
        "port": f"0.0.0.0:{8000 + i}->3000/tcp",
        "id": f"{i:x}" * 64,
        "image": "ghcr.io/tassium/app:latest",
        "state": "running",
        "health": "healthy",
        "cpuPercent": 1.5 + i,
        "memUsageMb": 120.0 + i,
    }
    for i in range(3)
]
AGENT = {"version": "0.1.0", "hostname": "worker", "dockerAvailable": True}

# The wallet of worker ``i`` (1-based), spelt by pgbench as '0x' || lpad(to_hex(:wid), 40, '0').
WALLET_SQL = "'0x' || lpad(to_hex(:wid), 40, '0')"
NOW_SQL = "(now() AT TIME ZONE 'UTC')"

AS_AT_D1CE3AB = f"""\\set wid random(1, :workers)
BEGIN;
SELECT "t1"."wallet_address", "t1"."created_at", "t1"."public_key", "t1"."enrolled_at", "t1"."hostname", "t1"."agent_version", "t1"."docker_available", "t1"."last_heartbeat_at", "t1"."last_seen_at", "t1"."tailscale_ip", "t1"."cpu_cores", "t1"."ram_total_gb", "t1"."storage_total_gb", "t1"."last_ping_at", "t1"."credits_millis" FROM "workers" AS "t1" WHERE ("t1"."wallet_address" = {WALLET_SQL}) LIMIT 1 FOR NO KEY UPDATE;
SELECT "t1"."worker_address", "t1"."start_time", "t1"."end_time" FROM "open_windows" AS "t1" WHERE ("t1"."worker_address" = {WALLET_SQL}) LIMIT 1 FOR NO KEY UPDATE;
UPDATE "open_windows" SET "start_time" = "start_time", "end_time" = {NOW_SQL} WHERE ("open_windows"."worker_address" = {WALLET_SQL});
DELETE FROM "worker_containers" WHERE ("worker_containers"."worker_address" = {WALLET_SQL});
INSERT INTO "worker_containers" ("worker_address", "container_name", "port", "container_id", "image", "state", "health", "cpu_percent", "mem_usage_mb") VALUES ({WALLET_SQL}, 'app-0', '0.0.0.0:8000->3000/tcp', '0000000000000000000000000000000000000000000000000000000000000000', 'ghcr.io/tassium/app:latest', 'running', 'healthy', 1.5, 120.0), ({WALLET_SQL}, 'app-1', '0.0.0.0:8001->3000/tcp', '1111111111111111111111111111111111111111111111111111111111111111', 'ghcr.io/tassium/app:latest', 'running', 'healthy', 2.5, 121.0), ({WALLET_SQL}, 'app-2', '0.0.0.0:8002->3000/tcp', '2222222222222222222222222222222222222222222222222222222222222222', 'ghcr.io/tassium/app:latest', 'running', 'healthy', 3.5, 122.0) RETURNING "worker_containers"."id";
INSERT INTO "worker_metrics" ("worker_address", "timestamp", "cpu_cores", "cpu_usage_percent", "ram_total_gb", "ram_used_gb", "storage_total_gb", "storage_used_gb", "container_count", "credits_millis") VALUES ({WALLET_SQL}, {NOW_SQL}, 4, 12.5, 16.0, 6.5, 200.0, 50.0, 3, 570) RETURNING "worker_metrics"."id";
UPDATE "workers" SET "hostname" = 'worker', "agent_version" = '0.1.0', "docker_available" = true, "last_heartbeat_at" = {NOW_SQL}, "last_seen_at" = {NOW_SQL}, "tailscale_ip" = NULL, "cpu_cores" = 4, "ram_total_gb" = 16.0, "storage_total_gb" = 200.0, "credits_millis" = ("workers"."credits_millis" + 570) WHERE ("workers"."wallet_address" = {WALLET_SQL});
COMMIT;
"""  # noqa: E501, S608 - the statements as PostgreSQL logged them, one per line

MINIMAL = f"""\\set wid random(1, :workers)
WITH worker AS (UPDATE workers SET hostname = 'worker', agent_version = '0.1.0', docker_available = true, last_heartbeat_at = {NOW_SQL}, last_seen_at = {NOW_SQL}, tailscale_ip = NULL, cpu_cores = 4, ram_total_gb = 16.0, storage_total_gb = 200.0, credits_millis = credits_millis + 570 WHERE wallet_address = {WALLET_SQL} AND (last_heartbeat_at IS NULL OR last_heartbeat_at < {NOW_SQL}) RETURNING wallet_address), win AS (UPDATE open_windows SET end_time = {NOW_SQL} WHERE worker_address IN (SELECT wallet_address FROM worker) AND {NOW_SQL} - end_time <= interval '1800 seconds' RETURNING worker_address) INSERT INTO worker_metrics (worker_address, "timestamp", cpu_cores, cpu_usage_percent, ram_total_gb, ram_used_gb, storage_total_gb, storage_used_gb, container_count, credits_millis) SELECT wallet_address, {NOW_SQL}, 4, 12.5, 16.0, 6.5, 200.0, 50.0, 3, 570 FROM worker;
"""  # noqa: E501, S608 - pgbench reads one statement per line

# The same with the container list written anew, as a heartbeat whose containers' CPU and
# memory moved since the last one needs (every heartbeat this benchmark sends): the
# equivalent of what the collector does.
_CONTAINER_ROWS = ", ".join(
    f"('{c['containerName']}', '{c['port']}', '{c['id']}', '{c['image']}', 'running', "
    f"'healthy', {c['cpuPercent']}, {c['memUsageMb']})"
    for c in CONTAINERS
)
MINIMAL_WITH_CONTAINERS = MINIMAL.replace(
    " INSERT INTO worker_metrics",
    f""", gone AS (DELETE FROM worker_containers WHERE worker_address IN (SELECT wallet_address FROM worker)), fresh AS (INSERT INTO worker_containers (worker_address, container_name, port, container_id, image, state, health, cpu_percent, mem_usage_mb) SELECT wallet_address, c.* FROM worker, (VALUES {_CONTAINER_ROWS}) AS c) INSERT INTO worker_metrics""",  # noqa: E501, S608
)


def enroll_directly(database_url: str, keys: list[bytes]) -> None:
    """The workers' rows as enrollment leaves them, inserted in bulk: enrolling 10,000
    workers one signed request at a time would take longer than the measurement."""
    from collector.models import Worker

    now = utcnow()
    rows = [
        {
            "wallet_address": wallet(number),
            "created_at": now,
            "public_key": encode_public_key(Ed25519PrivateKey.from_private_bytes(key)),
            "enrolled_at": now,
        }
        for number, key in enumerate(keys, start=1)
    ]
    with connected(database_url):
        insert_in_batches(Worker, rows, 500)


@dataclass(frozen=True)
class Phase:
    name: str
    per_worker: int  # heartbeats each worker has signed for this phase
    first: datetime  # its first heartbeat's timestamp; the next ones a second apart
    rate: float | None  # None: as fast as answers come
    seconds: float | None  # None: until every heartbeat is answered
    steady: bool = False  # the containers' figures the same at every heartbeat


@dataclass
class Outcome:
    latencies: list[float]
    ok: int  # answered 200 (within the phase's time for a saturation phase)
    failed: int
    finished: float  # when the last answer came
    exhausted: bool  # a connection ran out of signed heartbeats before the clock did
    cpu: float = 0.0  # CPU seconds the load generator spent sending them


def heartbeat(
    number: int, key: Ed25519PrivateKey, ts: datetime, steady: bool = False
) -> tuple[bytes, str]:
    """Worker ``number``'s heartbeat at ``ts`` as its agent sends it: body and signature."""
    # As in a real fleet, a running container's CPU and memory differ at every tick, so the
    # container list is written anew with every heartbeat (unless ``steady``).
    containers = [
        {**c, "cpuPercent": round(c["cpuPercent"] + (number + ts.microsecond) % 50, 1)}
        for c in CONTAINERS
    ]
    if steady:
        containers = CONTAINERS
    body = {
        "walletAddress": wallet(number),
        "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "containers": containers,
        "agent": AGENT,
        "system": machine(),
    }
    raw = json.dumps(body, separators=(",", ":")).encode()
    return raw, sign(key, raw)


def request_bytes(body: bytes, signature: str) -> bytes:
    """A POST /heartbeat as the agent sends it, whole, ready for the socket."""
    head = (
        "POST /heartbeat HTTP/1.1\r\nHost: collector\r\nContent-Type: application/json\r\n"
        f"{SIGNATURE_HEADER}: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _jobs(shares: list[list[tuple[int, bytes]]], phase: Phase) -> list[list[bytes]]:
    """Each connection's requests in sending order: round after round over its workers."""
    jobs = []
    for share in shares:
        keys = [(number, Ed25519PrivateKey.from_private_bytes(key)) for number, key in share]
        jobs.append(
            [
                request_bytes(*heartbeat(number, key, phase.first + round_ * SPACING, phase.steady))
                for round_ in range(phase.per_worker)
                for number, key in keys
            ]
        )
    return jobs


class Connection:
    """A keep-alive connection that sends prepared requests and reads each answer's status,
    with as little work as it can (http.client cost the load generator more CPU than the
    collector spent on some heartbeats: the machine's cores are shared)."""

    def __init__(self, host: str, port: int):
        self.address = (host, port)
        self.sock: socket.socket | None = None
        self.buffer = b""

    def exchange(self, request: bytes) -> int:
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=60)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buffer = b""
        self.sock.sendall(request)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._receive()
        head = self.buffer[:end].decode("latin-1")
        status = int(head.split(" ", 2)[1])
        length = int(re.search(r"(?im)^content-length:\s*(\d+)", head).group(1))
        while len(self.buffer) < end + 4 + length:
            self._receive()
        self.buffer = self.buffer[end + 4 + length :]
        return status

    def _receive(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the collector closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _send(url, job, phase: Phase, start: float, slot: int, slots: int, out: list) -> None:
    host, port = url.removeprefix("http://").split(":")
    connection = Connection(host, int(port))
    latencies: list[float] = []
    ok = failed = 0
    finished = start
    exhausted = False
    deadline = start + phase.seconds if phase.seconds is not None else math.inf
    # An open-loop sender that fell behind stops a little late, its lag measured.
    give_up = deadline + 5 if phase.rate is not None else deadline
    count = len(job)
    if phase.rate is not None:
        count = min(count, math.ceil(phase.rate * phase.seconds / slots))
    time.sleep(max(0.0, start - time.time()))
    for i in range(count):
        if phase.rate is not None:
            due = start + (i * slots + slot) / phase.rate
            time.sleep(max(0.0, due - time.time()))
        else:
            due = time.time()
        if due >= give_up or time.time() >= give_up:
            break
        try:
            status = connection.exchange(job[i])
        except (OSError, ValueError, AttributeError):
            connection.close()
            failed += 1
            continue
        finished = time.time()
        latencies.append(finished - due)
        if status != 200:
            failed += 1
        elif phase.rate is not None or finished <= deadline:
            ok += 1
    else:
        exhausted = phase.rate is None and phase.seconds is not None
    connection.close()
    out.append(Outcome(latencies, ok, failed, finished, exhausted))


def _sender(url, shares, phase: Phase, first_slot: int, slots: int, pipe) -> None:
    jobs = _jobs(shares, phase)
    pipe.send("signed")
    start = pipe.recv()
    cpu = time.process_time()
    out: list[Outcome] = []
    threads = [
        threading.Thread(target=_send, args=(url, job, phase, start, first_slot + i, slots, out))
        for i, job in enumerate(jobs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.append(Outcome([], 0, 0, start, False, time.process_time() - cpu))
    pipe.send(out)


def run_phase(url: str, keys: list[bytes], phase: Phase, clients: int, threads: int) -> Outcome:
    """Send one phase from ``clients`` processes, each signing its share before the clock."""
    slots = clients * threads
    numbered = list(enumerate(keys, start=1))
    shares = [numbered[slot::slots] for slot in range(slots)]
    context = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    for client in range(clients):
        ours, theirs = context.Pipe()
        mine = shares[client * threads : (client + 1) * threads]
        process = context.Process(
            target=_sender, args=(url, mine, phase, client * threads, slots, theirs)
        )
        process.start()
        pipes.append(ours)
        processes.append(process)
    for pipe in pipes:
        pipe.recv()
    start = time.time() + 0.5  # every thread connected and waiting before the clock starts
    for pipe in pipes:
        pipe.send(start)
    outcomes = [o for pipe in pipes for o in pipe.recv()]
    for process in processes:
        process.join()
    return Outcome(
        sorted(x for o in outcomes for x in o.latencies),
        sum(o.ok for o in outcomes),
        sum(o.failed for o in outcomes),
        max(o.finished for o in outcomes) - start,
        any(o.exhausted for o in outcomes),
        sum(o.cpu for o in outcomes),
    )


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


@dataclass(frozen=True)
class Row:
    phase: str
    offered: float | None
    achieved: float
    p50_ms: float
    p99_ms: float
    cpu_ms: dict[str, float]  # CPU time per heartbeat answered, of each server's processes
    note: str


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and all its descendants, live or exited: on a machine shared
    with other work, the cost per heartbeat stays comparable when the rate does not."""
    ticks = 0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = [
            int(child)
            for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()
        ]
    except (FileNotFoundError, ProcessLookupError):
        return 0.0  # exited meanwhile: its time is now in its parent's cutime
    # utime, stime, and the same of reaped children (fields 14 to 17 of stat).
    ticks = sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK") + sum(tree_cpu(child) for child in children)


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    return {name: tree_cpu(pid) for name, pid in pids.items()}


class Measurement:
    """The phases run against one served collector. Each worker's heartbeats are SPACING
    apart, each later than its last, all within the collector's backfill limit."""

    def __init__(
        self,
        database: str,
        url: str,
        pids: dict[str, int],
        keys: list[bytes],
        args,
        checkpoints: Callable[[], int] | None = None,
    ):
        self.database, self.url, self.pids, self.keys, self.args = database, url, pids, keys, args
        # PostgreSQL's checkpoints so far: one during a phase (its flush of every dirty page)
        # can stall commits for a moment, and it is said beside the phase's latencies.
        self.checkpoints = checkpoints
        self.cursor = utcnow() - timedelta(minutes=10)
        self.rows: list[Row] = []
        self.saturation_bound = float(SATURATION_FLOOR)

    def phase(self, name: str, heartbeats: float, rate: float | None, seconds: float | None):
        rounds = math.ceil(heartbeats / len(self.keys))
        planned = Phase(name, rounds, self.cursor, rate, seconds, self.args.steady_containers)
        self.cursor += rounds * SPACING
        return planned

    def run(self, planned: Phase) -> float:
        """Run a phase, add its row and return the rate it reached."""
        args = self.args
        checkpoints = self.checkpoints() if self.checkpoints else 0
        before = cpu_of(self.pids)
        outcome = run_phase(self.url, self.keys, planned, args.clients, args.threads)
        after = cpu_of(self.pids)
        checkpoints = self.checkpoints() - checkpoints if self.checkpoints else 0
        answered = max(1, len(outcome.latencies))
        cpu_ms = {name: (after[name] - before[name]) * 1000 / answered for name in self.pids}
        cpu_ms["sender"] = outcome.cpu * 1000 / answered
        notes = []
        if planned.rate is None:
            elapsed = planned.seconds if planned.seconds is not None else outcome.finished
            achieved = outcome.ok / elapsed
            if outcome.exhausted:
                notes.append("ran out of signed heartbeats: raise SATURATION_MARGIN")
        else:
            achieved = outcome.ok / outcome.finished
            late = outcome.finished - planned.seconds
            offered = planned.rate * planned.seconds
            kept_up = not outcome.failed and outcome.ok >= 0.99 * offered and late < 1.0
            notes.append("kept up" if kept_up else f"fell behind ({late:.1f} s late)")
        if outcome.failed:
            notes.append(f"{outcome.failed} refused or failed")
        if checkpoints:
            notes.append(f"{checkpoints} checkpoint{'s' if checkpoints > 1 else ''} ran")
        self.rows.append(
            Row(
                planned.name,
                planned.rate,
                achieved,
                percentile(outcome.latencies, 0.50) * 1000,
                percentile(outcome.latencies, 0.99) * 1000,
                cpu_ms,
                ", ".join(notes),
            )
        )
        print(f"{self.database}, {planned.name}: {achieved:.0f}/s", file=sys.stderr, flush=True)
        return achieved

    def saturation(self, name: str = "saturation") -> float:
        seconds = self.args.seconds
        return self.run(self.phase(name, self.saturation_bound * seconds, None, seconds))

    def phases(self) -> list[Row]:
        """First heartbeats, saturation, then each fixed rate."""
        workers = len(self.keys)
        # One each, as fast as they go: every worker's window opened, its key read, its
        # containers stored, so the phases after measure the steady state of a running fleet.
        first = self.run(self.phase("first heartbeats", workers, None, None))
        # Signed in advance: enough for well above the rate the first heartbeats reached.
        self.saturation_bound = max(SATURATION_FLOOR, SATURATION_MARGIN * first)
        self.saturation()
        for rate in self.args.rates:
            seconds = self.args.seconds
            self.run(self.phase(f"{rate:g}/s", rate * seconds + workers, rate, seconds))
        return self.rows


@dataclass(frozen=True)
class Ceiling:
    name: str
    tps: float
    latency_ms: float
    cpu_ms: float  # PostgreSQL's CPU time per transaction
    statements: int  # BEGIN and COMMIT included
    p50_ms: float | None = None  # at a fixed rate
    p99_ms: float | None = None


def pgbench(
    server: DurablePostgres,
    database: str,
    name: str,
    script: str,
    args,
    rate: float | None = None,
) -> Ceiling:
    """One pgbench script for ``--seconds`` with the collector's client concurrency; checks
    that the transactions wrote their metrics points (a script matching no worker would
    measure nothing). The minimal one skips, as the collector refuses, the heartbeat of a
    worker whose row a concurrent transaction stamped later (rare with many workers). At a
    fixed ``rate``, also the latencies' p50 and p99, from when each transaction was due (as
    the collector's are measured)."""
    connections = args.clients * args.threads
    count = "SELECT count(*) FROM worker_metrics"
    before = int(server_query(server, database, count))
    cpu_before = tree_cpu(postmaster(server))
    with tempfile.TemporaryDirectory(prefix="tassium-pgbench-") as directory:
        path = Path(directory) / "script.sql"
        path.write_text(script)
        path.chmod(0o644)
        command = [
            "pgbench", "-n", "-f", str(path),
            "-c", str(connections), "-j", str(args.clients), "-T", f"{args.seconds:g}",
            "-D", f"workers={args.workers}",
            "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", database,
        ]  # fmt: skip
        if rate is not None:
            command += ["-R", f"{rate:g}", "-l", f"--log-prefix={directory}/log"]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        latencies = sorted(_logged_latencies(Path(directory)))
    p50, p99 = (
        (percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000)
        if latencies
        else (None, None)
    )
    tps = float(re.search(r"^tps = ([\d.]+)", result.stdout, re.M).group(1))
    latency = float(re.search(r"^latency average = ([\d.]+) ms", result.stdout, re.M).group(1))
    done = int(re.search(r"actually processed: (\d+)", result.stdout).group(1))
    cpu_ms = (tree_cpu(postmaster(server)) - cpu_before) * 1000 / max(1, done)
    written = int(server_query(server, database, count)) - before
    if written < 0.9 * done:
        raise SystemExit(f"pgbench {name}: {done} transactions wrote {written} metrics points")
    statements = len(re.findall(r";$", script, re.M))
    return Ceiling(name, tps, latency, cpu_ms, statements, p50, p99)


def _logged_latencies(directory: Path) -> list[float]:
    """Seconds from when each transaction was due to its end, from pgbench's logs (-l with
    -R: client, transaction, latency µs, script, epoch, µs, schedule lag µs)."""
    found = []
    for log in directory.glob("log*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            found.append((int(fields[2]) + int(fields[6])) / 1e6)
    return found


def checkpoints_so_far(server: DurablePostgres) -> int:
    sql = "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
    return int(server_query(server, "postgres", sql))


def postmaster(server: DurablePostgres) -> int:
    return int((server.data / "postmaster.pid").read_text().split()[0])


def server_query(server: DurablePostgres, database: str, sql: str) -> str:
    import psycopg2

    connection = psycopg2.connect(
        host="127.0.0.1", port=server.port, user="postgres", dbname=database
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return str(cursor.fetchone()[0])
    finally:
        connection.close()


def capture_statements(server: DurablePostgres, key: bytes, args) -> str:
    """The statements the collector under test issues for a heartbeat that extends a window,
    as a pgbench script: worker 1 sends two heartbeats to a collector on a database of its
    own that logs every statement, and the second one's are taken from the server's log."""
    database_url = server.fresh_database()
    database = database_url.rsplit("/", 1)[1]
    server.admin(f"ALTER DATABASE {database} SET log_min_duration_statement = 0")
    enroll_directly(database_url, [key])
    with served_collector(processes=1, database_url=database_url) as url:
        host, port = url.removeprefix("http://").split(":")
        connection = Connection(host, int(port))
        for ago in (60, 59):
            ts = utcnow() - timedelta(seconds=ago)
            body, signature = heartbeat(
                1, Ed25519PrivateKey.from_private_bytes(key), ts, args.steady_containers
            )
            status = connection.exchange(request_bytes(body, signature))
            if status != 200:
                raise SystemExit(f"capturing statements: answered {status}")
        connection.close()
    server.admin(f"ALTER DATABASE {database} RESET log_min_duration_statement")
    logged = re.findall(
        r"^\S+ \S+ \S+ \[(\d+)\] LOG:  duration: [\d.]+ ms  (statement|execute [^:]*): "
        r"(.*?)(?=^\S+ \S+ \S+ \[\d+\] |\Z)",
        (server.dir / "log").read_text(),
        re.M | re.S,
    )
    if any(kind != "statement" for _, kind, _ in logged):
        raise SystemExit("capturing statements: the collector binds parameters server-side")
    quoted = f"'{wallet(1)}'"
    last = max(i for i, (_, _, text) in enumerate(logged) if quoted in text)
    pid = logged[last][0]
    ours = [text.strip() for p, _, text in logged if p == pid]
    end = max(i for i, text in enumerate(ours) if text == logged[last][2].strip())
    # Back to the end of the first heartbeat's transaction, forward to this one's.
    start = end
    while start > 0 and ours[start - 1] not in ("COMMIT", "ROLLBACK"):
        start -= 1
    while end + 1 < len(ours) and ours[end] not in ("COMMIT", "ROLLBACK"):
        end += 1
    statements = [
        re.sub(r"'\d{4}-\d\d-\d\dT[\d:.]+'::timestamp", NOW_SQL, text).replace(quoted, WALLET_SQL)
        for text in ours[start : end + 1]
        if not text.startswith(("SET ", "SHOW ", "SELECT pg_"))
    ]
    return "\\set wid random(1, :workers)\n" + "".join(f"{text};\n" for text in statements)


def serve(database_url: str, args):
    """The collector under test, as the options ask; yields its URL and process."""
    return served_collector(
        with_process=True,
        processes=args.processes,
        database_url=database_url,
        access_log=args.access_log,
    )


def equivalent(args, *, twins: bool = False) -> tuple[str, str]:
    """The one-statement transaction equivalent to the payload sent: its name and script
    (for the workers of ``add_twins`` with ``twins``)."""
    if args.steady_containers:
        name, script = "same, no containers", MINIMAL  # the collector writes no container list
    else:
        name, script = "minimal", MINIMAL_WITH_CONTAINERS
    if twins:
        script = script.replace("random(1, :workers)", "random(:workers + 1, 2 * :workers)")
    return name, script


def add_twins(database_url: str, workers: int) -> None:
    """Workers ``workers + 1`` to ``2 × workers``, as the collector's own are after their
    first heartbeats (a window open, three containers), for the ceilings measured while the
    collector runs: pgbench stamps a worker's last heartbeat with the present, after which
    the collector would refuse the earlier timestamps its sender has signed."""
    from collector.models import OpenWindow, Worker, WorkerContainer

    now = utcnow()
    numbers = range(workers + 1, 2 * workers + 1)
    with connected(database_url):
        insert_in_batches(
            Worker, [{"wallet_address": wallet(n), "created_at": now} for n in numbers], 500
        )
        insert_in_batches(
            OpenWindow,
            [{"worker": wallet(n), "start_time": now, "end_time": now} for n in numbers],
            500,
        )
        containers = [
            {
                "worker": wallet(n),
                "container_name": c["containerName"],
                "port": c["port"],
                "container_id": c["id"],
                "image": c["image"],
                "state": c["state"],
                "health": c["health"],
                "cpu_percent": c["cpuPercent"],
                "mem_usage_mb": c["memUsageMb"],
            }
            for n in numbers
            for c in CONTAINERS
        ]
        insert_in_batches(WorkerContainer, containers, 500)


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
