"""collector/uptime/commits.py: the group commit, alone (threads standing in for requests) and with
collector/windows.apply_heartbeats behind it, against heartbeats applied one at a time."""

import random
import threading
from datetime import timedelta

import pytest

from collector.store import db
from collector.store.models import DockerOutage, Worker, WorkerMetric
from collector.uptime.commits import GroupCommit
from collector.uptime.windows import apply_heartbeat, apply_heartbeats, sweep
from protocol.heartbeat import AgentInfo
from tests.collector.uptime.test_windows import (
    GAP,
    T0,
    beat,
    containers_of,
    create_worker,
    stored_records,
    stored_window,
)

# --- the group commit alone ---------------------------------------------------------------------


class Recorder:
    """An ``apply`` that answers each item with its double, refuses negative ones, and
    remembers each group it was given."""

    def __init__(self, fail: Exception | None = None):
        self.groups: list[list[int]] = []
        self.fail = fail
        self.release = threading.Event()
        self.release.set()

    def __call__(self, items: list[int]) -> list:
        self.release.wait(timeout=30)
        self.groups.append(list(items))
        if self.fail is not None:
            raise self.fail
        return [ValueError(f"refused {i}") if i < 0 else 2 * i for i in items]


def submit_all(commits: GroupCommit, items: list[int]) -> dict[int, object]:
    """Each item submitted from its own thread, as requests in flight together: its result
    or the exception it raised."""
    outcomes: dict[int, object] = {}
    started = threading.Barrier(len(items))

    def run(item: int) -> None:
        with commits.arriving():
            started.wait(timeout=30)
            try:
                outcomes[item] = commits.submit(item)
            except Exception as exc:
                outcomes[item] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a submit never returned"
    return outcomes


def test_requests_in_flight_together_share_a_group_and_each_gets_its_own_result():
    apply = Recorder()
    commits = GroupCommit(apply, wait=5.0)
    items = [*range(1, 20), -1, -2]
    outcomes = submit_all(commits, items)
    assert {i: o for i, o in outcomes.items() if i > 0} == {i: 2 * i for i in items if i > 0}
    assert [str(outcomes[-1]), str(outcomes[-2])] == ["refused -1", "refused -2"]
    # Every item applied exactly once, in fewer transactions than items.
    assert sorted(i for group in apply.groups for i in group) == sorted(items)
    assert len(apply.groups) < len(items)
    assert (commits.groups, commits.applied) == (len(apply.groups), len(items))


def test_a_failed_transaction_fails_every_member_and_the_next_group_still_runs():
    apply = Recorder(fail=RuntimeError("database down"))
    commits = GroupCommit(apply, wait=5.0)
    outcomes = submit_all(commits, list(range(8)))
    assert all(isinstance(o, RuntimeError) for o in outcomes.values())
    apply.fail = None
    assert commits.submit(21) == 42  # the lead was handed back: nothing waits for ever


def test_no_group_is_larger_than_its_limit_and_arrivals_during_a_commit_form_the_next():
    apply = Recorder()
    commits = GroupCommit(apply, wait=5.0, max_group=4)
    outcomes = submit_all(commits, list(range(30)))
    assert outcomes == {i: 2 * i for i in range(30)}
    assert max(len(group) for group in apply.groups) <= 4
    assert sorted(i for group in apply.groups for i in group) == list(range(30))


def test_a_request_alone_does_not_wait_for_others():
    """With nobody else in flight there is nothing to wait for: a wait of a minute would
    hold the thread past the join's time-out."""
    commits = GroupCommit(Recorder(), wait=60.0)
    done = []

    def run():
        with commits.arriving():
            done.append(commits.submit(5))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=20)
    assert done == [10]


def test_a_request_refused_before_submitting_is_not_waited_for():
    """A request that leaves without submitting (refused: bad signature, stale clock) no
    longer holds the leader back."""
    commits = GroupCommit(Recorder(), wait=60.0)
    leaving = threading.Event()
    done = []

    def refused():
        with commits.arriving():
            leaving.wait(timeout=30)

    def submitted():
        with commits.arriving():
            done.append(commits.submit(3))

    first = threading.Thread(target=refused)
    first.start()
    second = threading.Thread(target=submitted)
    second.start()
    leaving.set()
    first.join(timeout=20)
    second.join(timeout=20)
    assert done == [6]


# --- heartbeats: groups against the serial result ------------------------------------------------

DOWN = AgentInfo(dockerAvailable=False)
UP = AgentInfo(dockerAvailable=True)
NOW = T0 + timedelta(days=2)


def plan(workers: int, seed: int) -> list[tuple]:
    """Events over ``workers`` workers (by index): each worker's heartbeats in its own time
    order with every kind of step among them (extended, flushed after a silence, Docker down
    and back, the container list changed, duplicates that are refused), and sweeps between
    them (closing windows that went silent, some reopened by a late heartbeat after)."""
    rng = random.Random(seed)
    clocks = [T0] * workers
    events: list[tuple] = []
    for _ in range(40 * workers):
        if rng.random() < 0.03:
            events.append(("sweep", max(clocks) + timedelta(minutes=rng.choice([20, 45]))))
            continue
        index = rng.randrange(workers)
        if rng.random() < 0.08 and clocks[index] > T0:
            events.append(("beat", index, clocks[index], ("web",), None))  # a duplicate
            continue
        step = rng.choice([1, 2, 5, 10, 29, 31, 45])  # minutes; the gap is 30
        clocks[index] += timedelta(minutes=step, microseconds=rng.randrange(1000))
        containers = rng.choice([("web",), ("web",), ("web", "db")])
        agent = rng.choice([None, None, UP, DOWN])
        events.append(("beat", index, clocks[index], containers, agent))
    return events


def outcome(result) -> tuple:
    if isinstance(result, Exception):
        return (type(result).__name__, getattr(result, "stored", None))
    window = result.window and (result.window.start_time, result.window.end_time)
    return (result.action, window, result.counted, result.credits_millis)


def state(wallet: str) -> tuple:
    worker = Worker.get_by_id(wallet)
    outages = DockerOutage.select().where(DockerOutage.worker == wallet).order_by(DockerOutage.id)
    metrics = WorkerMetric.select().where(WorkerMetric.worker == wallet).order_by(WorkerMetric.id)
    return (
        stored_records(wallet),
        stored_window(wallet),
        [(o.time_from, o.time_to) for o in outages],
        [(m.timestamp, m.container_count, m.credits_millis) for m in metrics],
        containers_of(wallet),
        (
            worker.last_heartbeat_at,
            worker.credits_millis,
            worker.docker_available,
            worker.containers_digest,
        ),
    )


def run_serially(events: list[tuple], wallets: list[str]) -> list:
    results = []
    for event in events:
        if event[0] == "sweep":
            sweep(gap=GAP, now=event[1])
            continue
        _, index, ts, containers, agent = event
        try:
            results.append(
                apply_heartbeat(beat(wallets[index], ts, containers, agent), gap=GAP, now=NOW)
            )
        except Exception as exc:
            results.append(exc)
    return results


def run_in_groups(events: list[tuple], wallets: list[str], rng: random.Random) -> list:
    """Between two sweeps, the heartbeats in groups of random sizes, a worker's several
    heartbeats in one group among them."""
    results = []
    group: list = []

    def commit():
        if group:
            results.extend(apply_heartbeats(group, gap=GAP, now=NOW))
            group.clear()

    for event in events:
        if event[0] == "sweep":
            commit()
            sweep(gap=GAP, now=event[1])
            continue
        _, index, ts, containers, agent = event
        group.append((beat(wallets[index], ts, containers, agent), None))
        if rng.random() < 0.15:
            commit()
    commit()
    return results


def test_heartbeats_applied_in_groups_give_exactly_the_serial_result(dbconn):
    events = plan(workers=6, seed=12)
    serial_wallets = [create_worker() for _ in range(6)]
    grouped_wallets = [create_worker() for _ in range(6)]
    serial = run_serially(events, serial_wallets)
    # Read before the second run, whose sweeps would close the first run's windows too.
    expected = [state(w) for w in serial_wallets]
    grouped = run_in_groups(events, grouped_wallets, random.Random(7))
    assert [outcome(r) for r in grouped] == [outcome(r) for r in serial]
    assert [state(w) for w in grouped_wallets] == expected
    kinds = {outcome(r)[0] for r in serial}
    # The plan did exercise every step.
    assert {"opened", "extended", "flushed", "docker_unavailable", "StaleHeartbeat"} <= kinds


@pytest.mark.parametrize("wait", [0.0, 0.02])
def test_many_threads_through_the_group_commit_give_the_serial_result(dbconn, wait):
    """Each worker's heartbeats sent in order from its own thread, as its agent does, all
    workers at once through one group commit: the serial result, in fewer transactions."""
    events = [e for e in plan(workers=8, seed=5) if e[0] == "beat"]
    serial_wallets = [create_worker() for _ in range(8)]
    expected_results = [outcome(r) for r in run_serially(events, serial_wallets)]
    expected = [state(w) for w in serial_wallets]

    wallets = [create_worker() for _ in range(8)]
    commits = GroupCommit(lambda items: apply_heartbeats(items, gap=GAP, now=NOW), wait=wait)
    results: dict[int, object] = {}

    def agent(index: int) -> None:
        with db.database.connection_context():
            for number, event in enumerate(events):
                if event[1] != index:
                    continue
                _, _, ts, containers, info = event
                with commits.arriving():
                    try:
                        results[number] = commits.submit(
                            (beat(wallets[index], ts, containers, info), None)
                        )
                    except Exception as exc:
                        results[number] = exc

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [outcome(results[n]) for n in range(len(events))] == expected_results
    assert [state(w) for w in wallets] == expected
    assert commits.applied == len(events)
    if wait:
        assert commits.groups < len(events)


def test_items_submitted_together_come_back_in_order_in_as_few_groups_as_the_limit_allows():
    apply = Recorder()
    commits = GroupCommit(apply, wait=0.0, max_group=4)
    outcomes = commits.submit_many([1, -1, 3, 4, 5, 6, 7, 8, 9, 10])
    assert outcomes[0] == 2 and str(outcomes[1]) == "refused -1"
    assert outcomes[2:] == [6, 8, 10, 12, 14, 16, 18, 20]
    assert apply.groups == [[1, -1, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert commits.submit_many([]) == []
