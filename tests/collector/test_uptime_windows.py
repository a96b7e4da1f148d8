"""The window algorithm (the plan's section 6.2) and the sweeper's pass, called directly
with an explicit ``now`` on both databases."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from collector.models import OpenWindow, UptimeRecord, Worker, WorkerContainer
from collector.windows import StaleHeartbeat, UnknownWorker, apply_heartbeat, sweep
from protocol.heartbeat import AgentInfo, Container, Heartbeat
from tests.factories import new_wallet

GAP = timedelta(minutes=30)
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def wallet(dbconn) -> str:
    address = new_wallet()
    Worker.create(wallet_address=address)
    return address


def beat(wallet: str, ts: datetime, *names: str, create: bool = False, docker: bool = True):
    heartbeat = Heartbeat(
        wallet,
        ts,
        tuple(Container(containerName=n, port="") for n in names or ("web",)),
        AgentInfo(version="1", hostname="host", dockerAvailable=docker),
    )
    return apply_heartbeat(heartbeat, gap=GAP, now=ts, create_worker=create)


def windows(wallet: str) -> tuple[list[tuple], tuple | None]:
    records = [
        (r.time_from, r.time_to)
        for r in UptimeRecord.select()
        .where(UptimeRecord.worker == wallet)
        .order_by(UptimeRecord.time_from)
    ]
    window = OpenWindow.get_or_none(OpenWindow.worker == wallet)
    return records, (window.start_time, window.end_time) if window else None


def assert_no_overlap(wallet: str) -> None:
    records, window = windows(wallet)
    spans = records + ([window] if window else [])
    for (a_from, a_to), (b_from, b_to) in zip(spans, spans[1:], strict=False):
        assert a_from <= a_to < b_from <= b_to, f"overlapping windows {spans}"


def test_it_opens_a_window_on_the_first_heartbeat(wallet):
    assert beat(wallet, T0).action == "opened"
    assert windows(wallet) == ([], (T0, T0))


def test_it_extends_the_window_when_the_silence_is_exactly_the_gap(wallet):
    beat(wallet, T0)
    assert beat(wallet, T0 + GAP).action == "extended"
    assert windows(wallet) == ([], (T0, T0 + GAP))


def test_it_closes_window_after_gap(wallet):
    beat(wallet, T0)
    beat(wallet, T0 + timedelta(minutes=5))
    late = T0 + timedelta(minutes=5) + GAP + timedelta(microseconds=1)
    assert beat(wallet, late).action == "flushed"
    assert windows(wallet) == ([(T0, T0 + timedelta(minutes=5))], (late, late))


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(seconds=-1)], ids=["same", "older"])
def test_it_refuses_a_duplicate_or_older_heartbeat_and_changes_nothing(wallet, offset):
    beat(wallet, T0, "web")
    beat(wallet, T0 + timedelta(minutes=1), "web", "db")
    with pytest.raises(StaleHeartbeat):
        beat(wallet, T0 + timedelta(minutes=1) + offset, "other")
    assert windows(wallet) == ([], (T0, T0 + timedelta(minutes=1)))
    names = {c.container_name for c in WorkerContainer.select()}
    assert names == {"web", "db"}
    assert Worker.get_by_id(wallet).last_heartbeat_at == T0 + timedelta(minutes=1)


def test_it_replaces_the_container_list_in_the_same_transaction(wallet):
    beat(wallet, T0, "a", "b")
    beat(wallet, T0 + timedelta(minutes=1), "c")
    assert [c.container_name for c in WorkerContainer.select()] == ["c"]
    worker = Worker.get_by_id(wallet)
    assert (worker.hostname, worker.agent_version, worker.docker_available) == ("host", "1", True)


def test_an_unknown_worker_is_refused_unless_it_may_be_created(dbconn):
    stranger = new_wallet()
    with pytest.raises(UnknownWorker):
        beat(stranger, T0)
    assert Worker.get_or_none(Worker.wallet_address == stranger) is None
    assert beat(stranger, T0, create=True).action == "opened"


def test_the_sweeper_closes_only_windows_idle_longer_than_the_gap(dbconn):
    idle, busy, edge = new_wallet(), new_wallet(), new_wallet()
    now = T0 + timedelta(hours=2)
    for address, last in ((idle, now - GAP - timedelta(seconds=1)), (busy, now), (edge, now - GAP)):
        Worker.create(wallet_address=address)
        beat(address, last - timedelta(minutes=10))
        beat(address, last)
    assert sweep(gap=GAP, now=now) == 1
    assert windows(idle) == (
        [(now - GAP - timedelta(minutes=10, seconds=1), now - GAP - timedelta(seconds=1))],
        None,
    )
    assert windows(busy)[1] is not None and windows(edge)[1] is not None


def test_the_sweeper_never_closes_a_window_twice(wallet):
    beat(wallet, T0)
    now = T0 + 2 * GAP
    assert sweep(gap=GAP, now=now) == 1
    assert sweep(gap=GAP, now=now) == 0
    assert sweep(gap=GAP, now=now + GAP) == 0
    assert UptimeRecord.select().count() == 1


def test_a_late_heartbeat_within_the_gap_reopens_the_window_the_sweeper_closed(wallet):
    """A spool replayed after a collector outage continues the window: no uptime lost."""
    beat(wallet, T0)
    beat(wallet, T0 + timedelta(minutes=5))
    assert sweep(gap=GAP, now=T0 + timedelta(hours=3)) == 1
    replayed = T0 + timedelta(minutes=10)
    assert beat(wallet, replayed).action == "reopened"
    assert windows(wallet) == ([], (T0, replayed))
    assert_no_overlap(wallet)


def test_a_late_heartbeat_beyond_the_gap_opens_a_new_window(wallet):
    beat(wallet, T0)
    sweep(gap=GAP, now=T0 + timedelta(hours=3))
    later = T0 + GAP + timedelta(seconds=1)
    assert beat(wallet, later).action == "opened"
    assert windows(wallet) == ([(T0, T0)], (later, later))


def reference(timestamps: list[datetime]) -> list[tuple]:
    """The plan's algorithm in plain Python, with no sweeper: the windows a serial run gives."""
    spans: list[list] = []
    for ts in timestamps:
        if spans and ts - spans[-1][1] <= GAP:
            spans[-1][1] = ts
        else:
            spans.append([ts, ts])
    return [tuple(s) for s in spans]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sweeps_at_any_moment_give_the_windows_of_a_serial_run(wallet, seed):
    rng = random.Random(seed)
    ts, timestamps = T0, []
    for _ in range(60):
        ts += timedelta(minutes=rng.choice([1, 5, 29, 30, 31, 45, 120]))
        timestamps.append(ts)
    for ts in timestamps:
        beat(wallet, ts)
        if rng.random() < 0.4:  # a sweeper pass somewhere between this heartbeat and the next
            sweep(gap=GAP, now=ts + timedelta(minutes=rng.choice([1, 31, 90])))
        assert_no_overlap(wallet)
    records, window = windows(wallet)
    assert records + ([window] if window else []) == reference(timestamps)
