"""Many processes at once: a served collector with four gunicorn workers, heartbeat senders that
are separate OS processes posting over real HTTP, and sweeper passes running side by side. The
stored records and windows must be those of a serial run of the plan's algorithm over the
accepted heartbeats, and every window must be closed exactly once.

Each helper process is started with the 'spawn' method, waits for the others at a barrier and
reports ("ok", result) or ("error", traceback) on a queue.
"""

import multiprocessing
import queue
import random
import threading
import time
import traceback
from collections import Counter
from datetime import datetime, timedelta

import httpx
import psycopg2
import pytest
from peewee import chunked

from collector.store import db
from collector.store.models import OpenWindow, UptimeRecord, Worker, WorkerContainer
from collector.uptime.windows import sweep
from protocol.times import utcnow
from tests.collector.uptime.test_sweeper import wait_for
from tests.collector.uptime.test_windows import (
    GAP,
    T0,
    US,
    apply,
    assert_no_overlap,
    create_worker,
    plan_windows,
    stored_records,
    stored_window,
)
from tests.factories import FakeWorker, connected

pytestmark = pytest.mark.slow
POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)
# Steps between a worker's heartbeats: mostly within the gap, some exactly at it, some beyond.
STEPS = [
    (timedelta(minutes=1), 4),
    (timedelta(minutes=5), 4),
    (timedelta(minutes=10), 4),
    (timedelta(minutes=29), 2),
    (GAP, 2),
    (GAP + timedelta(seconds=1), 2),
    (timedelta(minutes=45), 1),
    (timedelta(hours=2), 1),
]


# --- running helper processes -----------------------------------------------------------------


def run_processes(jobs: list[tuple], timeout: float = 120) -> list:
    """Run ``target(barrier, results, *args)`` for each ``(target, *args)`` in its own spawned
    process; return their results in the order of ``jobs``, failing on any error."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(jobs))
    results = context.Queue()
    processes = [
        context.Process(target=target, args=(barrier, results, index, *args))
        for index, (target, *args) in enumerate(jobs)
    ]
    for process in processes:
        process.start()
    outcomes = {}
    deadline = time.monotonic() + timeout
    try:
        while len(outcomes) < len(processes):
            try:
                index, kind, detail = results.get(timeout=1)
            except queue.Empty:
                crashed = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
                if crashed:
                    pytest.fail(f"a helper process exited with {crashed} before reporting")
                if time.monotonic() > deadline:
                    pytest.fail(f"helper processes did not finish within {timeout:.0f} s")
                continue
            if kind == "error":
                pytest.fail(f"helper process {index} failed:\n{detail}")
            outcomes[index] = detail
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
    return [outcomes[i] for i in range(len(processes))]


def _report(results, index: int, work) -> None:
    try:
        results.put((index, "ok", work()))
    except BaseException:
        results.put((index, "error", traceback.format_exc()))


def post_heartbeats(barrier, results, index, url, posts, finished=None):
    """A sender: post each (key, raw body, headers) in order and record the answers. A 409 means
    the heartbeat was delivered already (by another sender): as the protocol says, move on."""

    def work():
        answers = []
        with httpx.Client(base_url=url, timeout=60) as client:
            barrier.wait(timeout=60)
            for key, raw, headers in posts:
                response = client.post("/heartbeat", content=raw, headers=headers)
                answers.append((key, response.status_code))
        if finished is not None:
            with finished.get_lock():
                finished.value += 1
        return answers

    _report(results, index, work)


def sweep_in_steps(barrier, results, index, database_url, nows):
    """Sweeper passes at each of ``nows``, started together with the other sweepers; returns
    how many windows they closed in all."""

    def work():
        with connected(database_url):
            barrier.wait(timeout=60)
            return sum(sweep(gap=GAP, now=now) for now in nows)

    _report(results, index, work)


def sweep_until_sent(barrier, results, index, database_url, finished, senders):
    """Sweep with the real clock, pass after pass, until every sender is done."""

    def work():
        passes = closed = 0
        with connected(database_url):
            barrier.wait(timeout=60)
            while finished.value < senders:
                closed += sweep(gap=GAP, now=utcnow())
                passes += 1
        return passes, closed

    _report(results, index, work)


# --- the workers and their heartbeats ---------------------------------------------------------


def heartbeat_times(rng: random.Random, now: datetime, count: int) -> list[datetime]:
    """Increasing timestamps from about 20 hours ago, all older than an hour: inside the
    collector's backfill, so they are accepted, and older than the gap, so a sweep at ``now``
    closes whatever window they leave open."""
    steps, weights = zip(*STEPS, strict=True)
    while True:
        ts = now - timedelta(hours=20) + timedelta(seconds=rng.randrange(3600), microseconds=1)
        times = [ts]
        for step in rng.choices(steps, weights, k=count - 1):
            times.append(times[-1] + step)
        if times[-1] < now - timedelta(hours=1):
            return times


class Fleet:
    """Enrolled workers, each with its timestamps and the signed bodies for them: a day of
    history that a collector down for that day takes as the agents' spools replayed."""

    def __init__(self, url: str, history, workers: int, beats: int, seed: int):
        rng = random.Random(seed)
        now = utcnow()
        self.workers = [FakeWorker() for _ in range(workers)]
        self.times = {w.wallet: heartbeat_times(rng, now, beats) for w in self.workers}
        self.posts = {}
        for worker in self.workers:
            assert worker.enroll_at(url).status_code == 201
            history.known(worker.wallet)
            self.posts[worker.wallet] = [
                ((worker.wallet, i), *worker.signed(worker.heartbeat_body(ts, [container(i)])))
                for i, ts in enumerate(self.times[worker.wallet])
            ]
        # Windows do flush: the serial run has more than one window per worker.
        assert all(len(plan_windows(times)) > 1 for times in self.times.values())

    def interleaved(self, wallets: list[str], rng: random.Random) -> list[tuple]:
        """The posts of these workers in a random interleaving that keeps each worker's order."""
        pending = {w: list(self.posts[w]) for w in wallets}
        merged = []
        while pending:
            wallet = rng.choice(sorted(pending))
            merged.append(pending[wallet].pop(0))
            if not pending[wallet]:
                del pending[wallet]
        return merged

    def assert_serial_run(self, database_url: str, *, swept: bool = False) -> None:
        """The database holds what the plan's algorithm gives over each worker's heartbeats in
        timestamp order (with every window closed when ``swept``), and the containers of the
        last one."""
        with connected(database_url):
            for wallet, times in self.times.items():
                windows = plan_windows(times)
                expected = (windows, None) if swept else (windows[:-1], windows[-1])
                assert (stored_records(wallet), stored_window(wallet)) == expected, wallet
                assert_no_overlap(wallet)
                assert Worker.get_by_id(wallet).last_heartbeat_at == times[-1]
                names = WorkerContainer.select(WorkerContainer.container_name).where(
                    WorkerContainer.worker == wallet
                )
                assert [c.container_name for c in names] == [
                    container(len(times) - 1)["containerName"]
                ]


def container(i: int) -> dict:
    return {"containerName": f"c{i}", "port": f"{8000 + i}/tcp"}


@pytest.fixture
def collector(serve_collector, history):
    # No interval sweeper: the tests decide when sweeps run.
    return serve_collector(processes=4, sweep_interval=0)


# --- heartbeats -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", [POSTGRES])
def test_senders_of_disjoint_workers_store_what_a_serial_run_gives(
    collector, database_url, history
):
    fleet = Fleet(collector.url, history, workers=6, beats=40, seed=1)
    wallets = [w.wallet for w in fleet.workers]
    rng = random.Random(2)
    # Three senders, two workers each, their heartbeats interleaved.
    jobs = [
        (post_heartbeats, collector.url, fleet.interleaved(wallets[i::3], rng)) for i in range(3)
    ]

    answers = [a for sender in run_processes(jobs) for a in sender]

    assert Counter(status for _, status in answers) == {200: 6 * 40}
    fleet.assert_serial_run(database_url)


@pytest.mark.parametrize(
    ("backend", "workers", "beats"), [(POSTGRES, 6, 40), ("sqlite", 2, 15)], ids=["pg", "sqlite"]
)
def test_senders_racing_the_same_heartbeats_deliver_each_exactly_once(
    collector, database_url, history, workers, beats
):
    fleet = Fleet(collector.url, history, workers=workers, beats=beats, seed=3)
    wallets = [w.wallet for w in fleet.workers]
    senders = 4
    # Every sender posts every heartbeat, in its own interleaving of the workers.
    jobs = [
        (post_heartbeats, collector.url, fleet.interleaved(wallets, random.Random(seed)))
        for seed in range(senders)
    ]

    answers = [a for sender in run_processes(jobs) for a in sender]

    by_heartbeat = {}
    for key, status in answers:
        by_heartbeat.setdefault(key, Counter())[status] += 1
    assert len(by_heartbeat) == workers * beats
    assert {key: dict(c) for key, c in by_heartbeat.items()} == {
        key: {200: 1, 409: senders - 1} for key in by_heartbeat
    }
    fleet.assert_serial_run(database_url)


@pytest.mark.parametrize("backend", [POSTGRES])
def test_heartbeats_racing_two_sweepers_still_give_the_records_of_a_serial_run(
    collector, database_url, history
):
    fleet = Fleet(collector.url, history, workers=6, beats=40, seed=4)
    wallets = [w.wallet for w in fleet.workers]
    rng = random.Random(5)
    finished = multiprocessing.get_context("spawn").Value("i", 0)
    jobs = [
        (post_heartbeats, collector.url, fleet.interleaved(wallets[i::3], rng), finished)
        for i in range(3)
    ] + [(sweep_until_sent, database_url, finished, 3)] * 2

    *senders, first, second = run_processes(jobs)

    assert Counter(status for sender in senders for _, status in sender) == {200: 6 * 40}
    # Every heartbeat is over an hour old: the sweepers kept closing windows that later
    # heartbeats had to reopen.
    assert first[1] + second[1] > 0
    with connected(database_url):
        sweep(gap=GAP, now=utcnow())
    fleet.assert_serial_run(database_url, swept=True)


# --- sweepers ---------------------------------------------------------------------------------


def seed_windows(database_url: str, stale: int, fresh: int) -> dict:
    """Workers with open windows: ``stale`` of them ending one after another over an hour from
    T0, ``fresh`` ones ending an hour after that; returns each wallet's window."""
    windows = {}
    for i in range(stale):
        end = T0 + timedelta(hours=1) * i / stale
        windows[f"0x{i:040x}"] = (end - timedelta(minutes=i % 50), end)
    for i in range(stale, stale + fresh):
        windows[f"0x{i:040x}"] = (T0, T0 + timedelta(hours=2))
    with connected(database_url) as database, database.atomic():
        for batch in chunked(windows, 500):
            Worker.insert_many([{"wallet_address": w, "created_at": T0} for w in batch]).execute()
            OpenWindow.insert_many(
                [
                    {"worker": w, "start_time": windows[w][0], "end_time": windows[w][1]}
                    for w in batch
                ]
            ).execute()
    return windows


@pytest.mark.parametrize(
    ("backend", "stale"), [(POSTGRES, 3000), ("sqlite", 500)], ids=["pg", "sqlite"]
)
def test_two_sweepers_at_once_close_each_window_exactly_once(database_url, stale):
    windows = seed_windows(database_url, stale=stale, fresh=20)
    fresh = {w for w, (_, end) in windows.items() if end == T0 + timedelta(hours=2)}
    # Both step through the same 400 passes, each closing the next slice of the windows
    # (the last one all the stale ones), so that they collide again and again.
    nows = [T0 + GAP + timedelta(hours=1) * (k + 1) / 400 + US for k in range(400)]

    counts = run_processes([(sweep_in_steps, database_url, nows)] * 2)

    assert sum(counts) == stale
    with connected(database_url):
        records = [(r.worker_address, r.time_from, r.time_to) for r in UptimeRecord.select()]
        still_open = {w.worker_address for w in OpenWindow.select()}
    assert len(records) == len(set(records)) == stale
    assert set(records) == {(w, *window) for w, window in windows.items() if w not in fresh}
    assert still_open == fresh


@pytest.mark.parametrize("backend", [POSTGRES])
def test_a_sweep_and_a_late_heartbeat_queued_on_the_same_window_both_go_through(database_url):
    """The sweep deletes the window and then records it, which checks the worker's key; the
    heartbeat locks the worker and then the window. Lined up behind one lock on the window
    (the sweep first), neither may end in a deadlock."""
    with connected(database_url):
        wallet = create_worker()
        apply(wallet, T0)
        blocker = psycopg2.connect(database_url)
        monitor = psycopg2.connect(database_url)
        monitor.autocommit = True
        outcomes = {}

        def waiting() -> int:
            with monitor.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                return cursor.fetchone()[0]

        def start(name: str, work) -> threading.Thread:
            def run():
                try:
                    with db.database.connection_context():
                        outcomes[name] = work()
                except Exception as exc:  # reported by the assertion below
                    outcomes[name] = exc

            thread = threading.Thread(target=run)
            thread.start()
            return thread

        try:
            with blocker.cursor() as cursor:
                cursor.execute(
                    "SELECT 1 FROM open_windows WHERE worker_address = %s FOR UPDATE", (wallet,)
                )
            sweeper = start("sweep", lambda: sweep(gap=GAP, now=T0 + timedelta(hours=2)))
            wait_for(lambda: waiting() == 1, "the sweep waiting for the window")
            late = T0 + timedelta(minutes=10)
            heartbeat = start("heartbeat", lambda: apply(wallet, late).action)
            wait_for(lambda: waiting() == 2, "the heartbeat waiting for the window")
            blocker.commit()
            sweeper.join(timeout=60)
            heartbeat.join(timeout=60)
        finally:
            blocker.close()
            monitor.close()

        assert outcomes == {"sweep": 1, "heartbeat": "reopened"}
        assert (stored_records(wallet), stored_window(wallet)) == ([], (T0, late))
