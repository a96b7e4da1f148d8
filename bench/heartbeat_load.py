"""A signed heartbeat load against a served collector, and what it measures.

Workers' rows are inserted as enrollment leaves them (``enroll_directly``); each phase
(``Phase``) is sent from several processes of keep-alive connections (``run_phase``), every
request signed before the clock starts, each worker always on the same connection so its
heartbeats arrive in order; ``Measurement`` runs the phases against one collector and keeps
a row per phase: the rate answered, p50/p99 latency, and the CPU per heartbeat of each
server's processes. Used by bench/ingest.py."""

import json
import math
import multiprocessing
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.fleet import insert_in_batches, wallet
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


def enroll_directly(database_url: str, keys: list[bytes]) -> None:
    """The workers' rows as enrollment leaves them, inserted in bulk: enrolling 10,000
    workers one signed request at a time would take longer than the measurement."""
    from collector.store.models import Worker

    # Before the heartbeats' compressed time starts (ten minutes ago), or none would count.
    enrolled = utcnow() - timedelta(hours=1)
    rows = [
        {
            "wallet_address": wallet(number),
            "created_at": enrolled,
            "public_key": encode_public_key(Ed25519PrivateKey.from_private_bytes(key)),
            "enrolled_at": enrolled,
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
