"""Several collector nodes on one PostgreSQL, as behind a load balancer: two ``serve``
instances on different ports share the database, each worker's heartbeats go to either (in
their order, as one agent sends them), and the result is what one serial collector gives, with
one sweeper among all their processes."""

import random
import re
import threading
from datetime import timedelta

import httpx
import pytest

from collector.store.models import OpenWindow, SweeperLease, Worker
from collector.uptime import credits
from collector.uptime.sweeper import LEASE
from protocol.times import utcnow
from tests.collector.uptime.test_windows import plan_windows, stored_records
from tests.factories import FakeWorker, connected, enroll_with_token
from tests.polling import wait_for

GAP = timedelta(seconds=60)
# Seconds between a worker's heartbeats: within the gap (extending its window) and beyond it
# (closing one and opening the next), so the sweeper closes windows that later heartbeats
# reopen.
STEPS = (20, 45, 59, 61, 30, 90, 10, 60, 40, 120, 5)
SWEEPER_RUNS = re.compile(r"^tassium_sweeper_runs_total (\S+)$", re.MULTILINE)


def sweeper_runs(url: str) -> float:
    """How many sweep passes this node's processes ran (each node sums only its own)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    return float(SWEEPER_RUNS.search(text)[1])


def lease_holder() -> str | None:
    row = SweeperLease.get_or_none(SweeperLease.name == LEASE)
    return row.holder if row is not None else None


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_nodes_on_one_database_give_the_serial_result_with_one_sweeper(
    serve_collector, database_url, history
):
    rng = random.Random(12)
    fleet = [FakeWorker() for _ in range(6)]
    with connected(database_url):
        for worker in fleet:
            enroll_with_token(worker.wallet, worker.public_key)
            history.known(worker.wallet)
    # Both sweep every 2 s: the lease must leave the passes to one process of the four. Time
    # runs in seconds here, so heartbeats may come closer together than min_interval.
    settings = {
        "gap": int(GAP.total_seconds()),
        "sweep_interval": 2,
        "processes": 2,
        "min_interval": 0,
    }
    nodes = [serve_collector(**settings), serve_collector(**settings)]

    start = utcnow().replace(microsecond=0) - timedelta(hours=2)
    timestamps = {}
    for n, worker in enumerate(fleet):
        steps = rng.sample(STEPS, len(STEPS))
        at = [start + timedelta(seconds=n)]
        for step in steps:
            at.append(at[-1] + timedelta(seconds=step))
        timestamps[worker.wallet] = at

    holders, stop = set(), threading.Event()

    def watch_lease() -> None:
        with connected(database_url):
            while not stop.wait(0.2):
                holders.add(lease_holder())

    def send(worker: FakeWorker, n: int) -> None:
        # Two workers alternate between the nodes, two stay on one, two go to either at random.
        pick = {0: lambda i: i % 2, 1: lambda i: (i + 1) % 2, 2: lambda i: 0, 3: lambda i: 1}
        choose = pick.get(n, lambda i: rng.randrange(2))
        with httpx.Client(timeout=10) as http:
            for i, ts in enumerate(timestamps[worker.wallet]):
                raw, headers = worker.signed(worker.heartbeat_body(ts))
                answer = http.post(
                    nodes[choose(i)].url + "/heartbeat", content=raw, headers=headers
                )
                assert answer.status_code == 200, answer.text

    watcher = threading.Thread(target=watch_lease)
    watcher.start()
    senders = [threading.Thread(target=send, args=(w, n)) for n, w in enumerate(fleet)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()

    with connected(database_url):
        wait_for(lambda: OpenWindow.select().count() == 0, "the sweeper closing every window")
        for worker in fleet:
            ts = timestamps[worker.wallet]
            assert stored_records(worker.wallet) == plan_windows(ts, GAP), worker.wallet
            # Credited as one collector would: each heartbeat for its step within the gap.
            steps = [b - a for a, b in zip(ts, ts[1:], strict=False)]
            expected = sum(
                credits.earned_millis(credits.FLAT_RATE, step) for step in steps if step <= GAP
            )
            assert Worker.get_by_id(worker.wallet).credits_millis == expected
    stop.set()
    watcher.join()

    # Each node served heartbeats, and every sweep pass ran in one process of one node.
    assert all(200 in node.heartbeat_statuses() for node in nodes)
    runs = [sweeper_runs(node.url) for node in nodes]
    assert sorted(runs)[0] == 0 and sorted(runs)[1] > 0, runs
    holders.discard(None)
    assert len(holders) == 1, holders
