"""collector/uptime/windows.py called directly, with explicit ``now`` and ``gap``: the plan's window
steps (section 6.2), the sweeper's pass, late heartbeats after a sweep, and the uptime sums.

The helpers at the top (the plan's algorithm in pure Python, the stored spans of a worker and
the no-overlap check) are shared with test_concurrency.py.
"""

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from msgspec import to_builtins
from peewee import IntegrityError

from collector.store.models import OpenWindow, UptimeRecord, Worker, WorkerContainer, WorkerMetric
from collector.uptime.windows import (
    StaleHeartbeat,
    UnknownWorker,
    apply_heartbeat,
    apply_heartbeats,
    sweep,
    uptime,
)
from protocol.heartbeat import AgentInfo, Container, Heartbeat, System
from tests.factories import new_wallet

GAP = timedelta(minutes=30)
US = timedelta(microseconds=1)
T0 = datetime(2026, 11, 24, 21, 0, tzinfo=UTC)

Span = tuple[datetime, datetime]


# --- shared helpers ---------------------------------------------------------------------------


def plan_windows(timestamps: list[datetime], gap: timedelta = GAP) -> list[Span]:
    """The plan's section 6.2 run serially over accepted heartbeats, in their order: every
    window it produces, the closed ones and (last) the one still open."""
    closed: list[Span] = []
    window: Span | None = None
    for ts in timestamps:
        if window is None:
            window = (ts, ts)
        elif ts - window[1] > gap:
            closed.append(window)
            window = (ts, ts)
        else:
            window = (window[0], ts)
    return closed + ([window] if window is not None else [])


def stored_records(wallet: str) -> list[Span]:
    query = (
        UptimeRecord.select()
        .where(UptimeRecord.worker == wallet)
        .order_by(UptimeRecord.time_from, UptimeRecord.id)
    )
    return [(r.time_from, r.time_to) for r in query]


def stored_window(wallet: str) -> Span | None:
    window = OpenWindow.get_or_none(OpenWindow.worker == wallet)
    return (window.start_time, window.end_time) if window is not None else None


def assert_no_overlap(wallet: str) -> None:
    """A worker's records, and its open window after them, are disjoint spans in time order
    (a window closed twice, or a late heartbeat recorded twice, would overlap)."""
    spans = stored_records(wallet)
    window = stored_window(wallet)
    if window is not None:
        spans.append(window)
    for start, end in spans:
        assert start <= end, f"{wallet}: span {start} to {end} ends before it starts"
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end < start, f"{wallet}: a span ending {end} overlaps the next from {start}"


def create_worker() -> str:
    """A Worker row, as enrollment leaves it; its wallet."""
    wallet = new_wallet()
    Worker.create(wallet_address=wallet, created_at=T0 - timedelta(days=1))
    return wallet


def containers_of(wallet: str) -> list[tuple]:
    query = (
        WorkerContainer.select()
        .where(WorkerContainer.worker == wallet)
        .order_by(WorkerContainer.container_name)
    )
    return [(c.container_name, c.port, c.container_id, c.image, c.state, c.health) for c in query]


# --- this file's set-up -----------------------------------------------------------------------


def beat(wallet: str, ts: datetime, containers=("web",), agent: AgentInfo | None = None):
    return Heartbeat(
        wallet,
        ts,
        tuple(c if isinstance(c, Container) else Container(c, "8080/tcp") for c in containers),
        agent,
    )


def apply(wallet: str, ts: datetime, containers=("web",), *, now=None, gap=GAP, **options):
    """Apply a heartbeat as the collector does; it arrives at ``now`` (default: its own time)."""
    return apply_heartbeat(beat(wallet, ts, containers), gap=gap, now=now or ts, **options)


@pytest.fixture
def new_worker(dbconn):
    """Create Worker rows (as enrollment does) and return their wallets."""
    return create_worker


@pytest.fixture
def wallet(new_worker) -> str:
    return new_worker()


def snapshot(wallet: str) -> tuple:
    worker = Worker.get_by_id(wallet)
    return (
        stored_records(wallet),
        stored_window(wallet),
        containers_of(wallet),
        worker.last_heartbeat_at,
        worker.last_seen_at,
        worker.hostname,
    )


# --- the plan's steps -------------------------------------------------------------------------


def test_the_first_heartbeat_opens_a_window_at_its_timestamp(wallet):
    applied = apply(wallet, T0)

    assert applied.action == "opened"
    assert (applied.window.start_time, applied.window.end_time) == (T0, T0)
    assert stored_window(wallet) == (T0, T0)
    assert stored_records(wallet) == []
    assert Worker.get_by_id(wallet).last_heartbeat_at == T0


@pytest.mark.parametrize(
    "step",
    [timedelta(seconds=1), GAP - US, GAP],
    ids=["a-second", "just-inside-the-gap", "exactly-the-gap"],
)
def test_a_heartbeat_within_the_gap_extends_the_window_without_a_record(wallet, step):
    apply(wallet, T0)
    applied = apply(wallet, T0 + step)

    assert applied.action == "extended"
    assert stored_window(wallet) == (T0, T0 + step)
    assert stored_records(wallet) == []


@pytest.mark.parametrize(
    "over",
    [US, timedelta(seconds=1), timedelta(hours=5)],
    ids=["a-microsecond", "a-second", "hours"],
)
def test_a_heartbeat_beyond_the_gap_flushes_the_window_into_a_record_and_opens_a_new_one(
    wallet, over
):
    end = T0 + timedelta(minutes=10)
    apply(wallet, T0)
    apply(wallet, end)
    ts = end + GAP + over

    applied = apply(wallet, ts)

    assert applied.action == "flushed"
    assert stored_records(wallet) == [(T0, end)]
    assert stored_window(wallet) == (ts, ts)
    assert_no_overlap(wallet)


@pytest.mark.parametrize(
    "offset, stored",
    [
        (timedelta(0), True),
        (-US, True),
        (-timedelta(minutes=5), True),
        (-timedelta(minutes=10), True),
        (-timedelta(minutes=10) - US, False),
        (-timedelta(days=1), False),
    ],
    ids=[
        "duplicate",
        "a-microsecond-older",
        "minutes-older",
        "the-window-start",
        "before-the-window",
        "a-day-older",
    ],
)
def test_a_duplicate_or_older_heartbeat_is_stale_and_changes_nothing(wallet, offset, stored):
    last = T0 + timedelta(minutes=10)
    apply(wallet, T0)
    apply(wallet, last, now=last + timedelta(seconds=3))
    before = snapshot(wallet)

    with pytest.raises(StaleHeartbeat) as raised:
        apply_heartbeat(
            beat(wallet, last + offset, ["other"], AgentInfo("9.9", "elsewhere", False)),
            gap=GAP,
            now=last + timedelta(hours=1),
        )

    assert raised.value.last == last
    # Stored: its time lies in the open window [T0, last], so the agent may forget it.
    assert raised.value.stored is stored
    assert snapshot(wallet) == before


def test_a_heartbeat_of_an_unknown_worker_is_refused_and_writes_nothing(dbconn):
    with pytest.raises(UnknownWorker):
        apply(new_wallet(), T0)

    assert (Worker.select().count(), OpenWindow.select().count()) == (0, 0)
    assert WorkerContainer.select().count() == 0


def test_create_worker_creates_the_worker_on_first_sight(dbconn):
    wallet = new_wallet()
    now = T0 + timedelta(seconds=2)

    applied = apply(wallet, T0, now=now, create_worker=True)

    assert applied.action == "opened"
    worker = Worker.get_by_id(wallet)
    assert (worker.created_at, worker.last_heartbeat_at, worker.last_seen_at) == (now, T0, now)
    assert worker.public_key is None
    assert stored_window(wallet) == (T0, T0)


def test_the_worker_row_keeps_the_agent_details_and_the_arrival_time(wallet):
    apply_heartbeat(
        beat(wallet, T0, agent=AgentInfo("1.2.0", "node-a", False)),
        gap=GAP,
        now=T0 + timedelta(seconds=4),
    )
    # An agent that sends no version or hostname does not erase the known ones.
    apply_heartbeat(
        beat(wallet, T0 + timedelta(minutes=5), agent=AgentInfo(None, None, True)),
        gap=GAP,
        now=T0 + timedelta(minutes=6),
    )

    worker = Worker.get_by_id(wallet)
    assert (worker.agent_version, worker.hostname, worker.docker_available) == (
        "1.2.0",
        "node-a",
        True,
    )
    assert worker.last_heartbeat_at == T0 + timedelta(minutes=5)
    assert worker.last_seen_at == T0 + timedelta(minutes=6)


# --- containers -------------------------------------------------------------------------------


def test_each_heartbeat_replaces_the_container_list(wallet):
    full = Container("api", "0.0.0.0:8080->80/tcp", "c0ffee", "local/api:1", "running", "healthy")
    apply(wallet, T0, [full, "db"])
    assert containers_of(wallet) == [
        ("api", "0.0.0.0:8080->80/tcp", "c0ffee", "local/api:1", "running", "healthy"),
        ("db", "8080/tcp", None, None, None, None),
    ]

    apply(wallet, T0 + timedelta(minutes=1), ["cache"])
    assert containers_of(wallet) == [("cache", "8080/tcp", None, None, None, None)]

    apply(wallet, T0 + timedelta(minutes=2), [])
    assert containers_of(wallet) == []


def test_an_unchanged_container_list_is_not_written_again(wallet):
    def row_ids():
        query = WorkerContainer.select().where(WorkerContainer.worker == wallet)
        return sorted(c.id for c in query)

    apply(wallet, T0, ["api", "db"])
    written = row_ids()
    apply(wallet, T0 + timedelta(minutes=1), ["api", "db"])
    assert row_ids() == written  # the same rows, not deleted and inserted again

    busy = Container("api", "8080/tcp", cpuPercent=12.5)
    apply(wallet, T0 + timedelta(minutes=2), [busy, "db"])
    assert row_ids() != written
    assert WorkerContainer.get(container_name="api", worker=wallet).cpu_percent == 12.5


def test_the_container_list_of_one_worker_leaves_the_others_alone(new_worker):
    first, second = new_worker(), new_worker()
    apply(first, T0, ["a1", "a2"])
    apply(second, T0, ["b1"])
    apply(first, T0 + timedelta(minutes=1), ["a3"])

    assert [c[0] for c in containers_of(first)] == ["a3"]
    assert [c[0] for c in containers_of(second)] == ["b1"]


@pytest.mark.parametrize(
    "step", [timedelta(minutes=1), timedelta(hours=2)], ids=["extending", "flushing"]
)
def test_a_heartbeat_whose_containers_cannot_be_stored_leaves_its_window_step_undone(wallet, step):
    apply(wallet, T0)
    before = snapshot(wallet)

    # A container without a name violates NOT NULL only after the window step ran: the
    # step must roll back with it, as one transaction.
    with pytest.raises(IntegrityError):
        apply(wallet, T0 + step, [Container(None)])  # type: ignore[arg-type]

    assert snapshot(wallet) == before
    # Not accepted, so the same timestamp is still new.
    assert apply(wallet, T0 + step).action in ("extended", "flushed")


def test_a_group_whose_container_rows_cannot_be_stored_writes_nothing(new_worker):
    # Two rows or more are written by another statement than one is (on PostgreSQL).
    first, second = new_worker(), new_worker()
    apply(first, T0)
    apply(second, T0)
    before = snapshot(first), snapshot(second)

    with pytest.raises(IntegrityError):
        apply_heartbeats(
            [
                (beat(first, T0 + timedelta(minutes=1), ["api", "db"]), None),
                (beat(second, T0 + timedelta(minutes=1), ["api", Container(None)]), None),  # type: ignore[arg-type]
            ],
            gap=GAP,
            now=T0 + timedelta(minutes=1),
        )

    assert (snapshot(first), snapshot(second)) == before


def stored_rows(wallet: str) -> tuple:
    """What the worker's heartbeats wrote, without the keys that differ between workers."""
    worker = Worker.select().where(Worker.wallet_address == wallet).dicts().get()
    del worker["wallet_address"], worker["created_at"]
    metrics = WorkerMetric.select().where(WorkerMetric.worker == wallet).order_by(WorkerMetric.id)
    containers = (
        WorkerContainer.select()
        .where(WorkerContainer.worker == wallet)
        .order_by(WorkerContainer.container_name)
    )
    return (
        worker,
        [{**m, "id": None, "worker": None} for m in metrics.dicts()],
        [{**c, "id": None, "worker": None} for c in containers.dicts()],
        stored_window(wallet),
    )


def test_a_group_writes_what_its_heartbeats_would_write_one_by_one(new_worker):
    # Many rows are written by other statements than one row is (on PostgreSQL): the values
    # stored must be the same, to the last digit of a float and with every missing fact.
    system = System(6, 33.333333333333336, 15.623456789012345, None, 931.5123456789012, 0.1)
    api = Container("api", "8080/tcp", "c0ffee", "local/api:1", "running", None, 1 / 3, 123.4)

    def heartbeat(wallet: str, kind: int, ts: datetime) -> Heartbeat:
        return [
            Heartbeat(wallet, ts, (api, Container("db")), AgentInfo("1.0", "a", True), system),
            Heartbeat(wallet, ts, (), None, None, tailscale_ip="100.64.0.7", container_count=4),
            Heartbeat(wallet, ts, (api,), AgentInfo(None, None, False), System(cpuCores=2)),
            Heartbeat(wallet, ts, (api,), AgentInfo("1.1", None, True), system),
        ][kind % 4]

    grouped, alone = [new_worker() for _ in range(3)], [new_worker() for _ in range(3)]
    for step in range(5):
        ts, now = T0 + timedelta(minutes=step), T0 + timedelta(minutes=step, seconds=1)
        group = [(heartbeat(w, i + step, ts), None) for i, w in enumerate(grouped)]
        apply_heartbeats(group, gap=GAP, now=now)
        for i, w in enumerate(alone):
            apply_heartbeat(heartbeat(w, i + step, ts), gap=GAP, now=now)

    for g, a in zip(grouped, alone, strict=True):
        assert stored_rows(g) == stored_rows(a)


# --- the sweeper's pass -----------------------------------------------------------------------


def test_sweep_closes_only_windows_silent_for_longer_than_the_gap(new_worker):
    now = T0 + timedelta(hours=3)
    ends = {
        "hours-ago": now - timedelta(hours=2),
        "a-second-over": now - GAP - timedelta(seconds=1),
        "a-microsecond-over": now - GAP - US,
        "exactly-the-gap": now - GAP,
        "a-minute-ago": now - timedelta(minutes=1),
    }
    wallets = {name: new_worker() for name in ends}
    for name, end in ends.items():
        apply(wallets[name], end - timedelta(minutes=20))
        apply(wallets[name], end)

    assert sweep(gap=GAP, now=now) == 3

    for name in ("hours-ago", "a-second-over", "a-microsecond-over"):
        end = ends[name]
        assert stored_records(wallets[name]) == [(end - timedelta(minutes=20), end)], name
        assert stored_window(wallets[name]) is None, name
    for name in ("exactly-the-gap", "a-minute-ago"):
        end = ends[name]
        assert stored_records(wallets[name]) == [], name
        assert stored_window(wallets[name]) == (end - timedelta(minutes=20), end), name


def test_sweep_never_closes_a_window_twice(new_worker):
    stale, fresh = new_worker(), new_worker()
    apply(stale, T0)
    apply(fresh, T0 + timedelta(hours=2))
    now = T0 + timedelta(hours=2, minutes=1)

    assert sweep(gap=GAP, now=now) == 1
    assert sweep(gap=GAP, now=now) == 0
    # Much later the fresh window goes too, and only it.
    assert sweep(gap=GAP, now=now + timedelta(days=1)) == 1

    assert stored_records(stale) == [(T0, T0)]
    assert stored_records(fresh) == [(T0 + timedelta(hours=2),) * 2]
    assert UptimeRecord.select().count() == 2


def test_sweep_of_an_empty_database_closes_nothing(dbconn):
    assert sweep(gap=GAP, now=T0) == 0
    assert UptimeRecord.select().count() == 0


def test_sweep_uses_the_gap_it_is_given(wallet):
    apply(wallet, T0)
    now = T0 + timedelta(hours=1)

    assert sweep(gap=timedelta(hours=2), now=now) == 0
    assert stored_window(wallet) == (T0, T0)
    assert sweep(gap=timedelta(minutes=59), now=now) == 1
    assert stored_records(wallet) == [(T0, T0)]


# --- late heartbeats after a sweep ------------------------------------------------------------


@pytest.fixture
def swept(wallet):
    """A worker with one flushed record and a second window that the sweeper then closed."""
    earlier = (T0 - timedelta(hours=3), T0 - timedelta(hours=2, minutes=40))
    for ts in earlier:
        apply(wallet, ts)
    apply(wallet, T0)
    apply(wallet, T0 + timedelta(minutes=10))
    assert sweep(gap=GAP, now=T0 + timedelta(hours=4)) == 1
    assert stored_records(wallet) == [earlier, (T0, T0 + timedelta(minutes=10))]
    return wallet, earlier


@pytest.mark.parametrize(
    "late", [timedelta(seconds=1), timedelta(minutes=12), GAP], ids=["1s", "12min", "the-gap"]
)
def test_a_late_heartbeat_within_the_gap_reopens_the_swept_record(swept, late):
    wallet, earlier = swept
    ts = T0 + timedelta(minutes=10) + late

    applied = apply(wallet, ts, now=T0 + timedelta(hours=4, minutes=1))

    assert applied.action == "reopened"
    assert stored_records(wallet) == [earlier]
    assert stored_window(wallet) == (T0, ts)
    assert_no_overlap(wallet)


@pytest.mark.parametrize("over", [US, timedelta(hours=1)], ids=["a-microsecond", "an-hour"])
def test_a_late_heartbeat_beyond_the_gap_opens_a_new_window_after_the_swept_record(swept, over):
    wallet, earlier = swept
    ts = T0 + timedelta(minutes=10) + GAP + over

    applied = apply(wallet, ts, now=T0 + timedelta(hours=4, minutes=1))

    assert applied.action == "opened"
    assert stored_records(wallet) == [earlier, (T0, T0 + timedelta(minutes=10))]
    assert stored_window(wallet) == (ts, ts)
    assert_no_overlap(wallet)


def test_a_reopened_window_is_swept_again_into_a_single_record(swept):
    wallet, earlier = swept
    late = T0 + timedelta(minutes=25)
    apply(wallet, late, now=T0 + timedelta(hours=4, minutes=1))

    assert sweep(gap=GAP, now=T0 + timedelta(hours=4, minutes=2)) == 1

    assert stored_records(wallet) == [earlier, (T0, late)]
    assert stored_window(wallet) is None
    assert_no_overlap(wallet)


@pytest.mark.parametrize(
    "ts, stored",
    [
        (T0 + timedelta(minutes=10), True),
        (T0 + timedelta(minutes=5), True),
        (T0, True),
        (T0 - timedelta(hours=1), False),
        (T0 - timedelta(hours=2, minutes=40), True),
        (T0 - timedelta(hours=2, minutes=50), True),
        (T0 - timedelta(hours=3), True),
        (T0 - timedelta(hours=3) - US, False),
    ],
    ids=[
        "the-swept-end",
        "inside-the-swept-record",
        "the-swept-start",
        "between-records",
        "the-earlier-end",
        "inside-the-earlier-record",
        "the-earlier-start",
        "before-every-record",
    ],
)
def test_a_heartbeat_not_later_than_the_swept_window_is_stale(swept, ts, stored):
    wallet, _ = swept
    before = snapshot(wallet)

    with pytest.raises(StaleHeartbeat) as raised:
        apply(wallet, ts, now=T0 + timedelta(hours=4, minutes=1))

    # Stored when a record covers it (ends included): its time is counted already.
    assert raised.value.stored is stored
    assert snapshot(wallet) == before


# --- any sequence against the plan ------------------------------------------------------------


@dataclass
class Reference:
    """The documented behaviour in pure Python: heartbeats must be strictly later than the last
    accepted one; the windows are the plan's over the accepted heartbeats; a sweep closes
    the open window of every worker silent for longer than the gap."""

    accepted: dict[str, list[datetime]] = field(default_factory=dict)
    open: dict[str, bool] = field(default_factory=dict)

    def heartbeat(self, wallet: str, ts: datetime) -> str | None:
        """The action the collector should report, or None when the heartbeat is stale."""
        seen = self.accepted.setdefault(wallet, [])
        if seen and ts <= seen[-1]:
            return None
        was_open = self.open.get(wallet, False)
        seen.append(ts)
        self.open[wallet] = True
        if len(seen) == 1:
            return "opened"
        within = ts - seen[-2] <= GAP
        if was_open:
            return "extended" if within else "flushed"
        return "reopened" if within else "opened"

    def sweep(self, now: datetime) -> int:
        closing = [
            w for w, is_open in self.open.items() if is_open and self.accepted[w][-1] < now - GAP
        ]
        for w in closing:
            self.open[w] = False
        return len(closing)

    def stored(self, wallet: str, ts: datetime) -> bool:
        """Whether a stale heartbeat's time is already counted: inside a window (ends
        included), closed or open."""
        return any(a <= ts <= b for a, b in plan_windows(self.accepted.get(wallet, [])))

    def expected(self, wallet: str) -> tuple[list[Span], Span | None]:
        windows = plan_windows(self.accepted.get(wallet, []))
        if self.open.get(wallet):
            return windows[:-1], windows[-1]
        return windows, None


STEPS = [
    -timedelta(minutes=10),  # older: stale
    timedelta(0),  # a duplicate: stale
    US,
    timedelta(seconds=1),
    timedelta(minutes=5),
    GAP - US,
    GAP,
    GAP + US,
    GAP + timedelta(seconds=1),
    timedelta(hours=2),
]
SWEEP_DELAYS = [timedelta(0), timedelta(minutes=10), GAP, GAP + US, timedelta(hours=2)]


@pytest.mark.parametrize("seed", [20261124, 7])
def test_any_mix_of_heartbeats_and_sweeps_gives_the_plans_windows_without_overlap(new_worker, seed):
    rng = random.Random(seed)
    wallets = [new_worker() for _ in range(3)]
    last = dict.fromkeys(wallets, T0)
    reference = Reference()
    actions, stale_stored = set(), set()

    for step in range(150):
        if rng.random() < 0.7:
            wallet = rng.choice(wallets)
            ts = last[wallet] + rng.choice(STEPS)
            expected = reference.heartbeat(wallet, ts)
            # It arrives after any sweep so far, as a spooled heartbeat would.
            now = max(last.values()) + timedelta(hours=3)
            if expected is None:
                with pytest.raises(StaleHeartbeat) as raised:
                    apply(wallet, ts, now=now)
                assert raised.value.stored is reference.stored(wallet, ts), f"step {step}"
                stale_stored.add(raised.value.stored)
            else:
                assert apply(wallet, ts, now=now).action == expected, f"step {step}"
                last[wallet] = ts
                actions.add(expected)
        else:
            now = max(last.values()) + rng.choice(SWEEP_DELAYS)
            assert sweep(gap=GAP, now=now) == reference.sweep(now), f"step {step}"
        for wallet in wallets:
            assert (stored_records(wallet), stored_window(wallet)) == reference.expected(wallet), (
                f"step {step}"
            )
            assert_no_overlap(wallet)

    # The sequence went through every kind of step, so the comparison meant something.
    assert actions == {"opened", "extended", "flushed", "reopened"}
    assert stale_stored == {True, False}


# --- uptime -----------------------------------------------------------------------------------


@pytest.fixture
def history(wallet):
    """A record from T0 to T0+1h and an open window from T0+3h to T0+3h20."""
    for minutes in (0, 30, 60, 180, 200):
        apply(wallet, T0 + timedelta(minutes=minutes))
    assert stored_records(wallet) == [(T0, T0 + timedelta(hours=1))]
    return Worker.get_by_id(wallet)


def test_uptime_sums_records_and_the_open_window_clipped_to_the_range(history):
    start, end = T0 + timedelta(minutes=30), T0 + timedelta(minutes=190)

    result = to_builtins(uptime(history, start, end))

    assert result["records"] == [
        {"timeFrom": "2026-11-24T21:00:00Z", "timeTo": "2026-11-24T22:00:00Z"}
    ]
    assert result["openWindow"] == {
        "startTime": "2026-11-25T00:00:00Z",
        "endTime": "2026-11-25T00:20:00Z",
    }
    assert result["totalSeconds"] == (30 + 10) * 60
    assert result["uptimeFraction"] == 0.25


def test_uptime_leaves_out_records_outside_the_range(history):
    result = to_builtins(
        uptime(history, T0 + timedelta(hours=2), T0 + timedelta(hours=2, minutes=30))
    )

    assert result["records"] == []
    assert result["totalSeconds"] == 0
    assert result["uptimeFraction"] == 0.0


def test_uptime_of_a_range_covering_everything_counts_every_window(history):
    result = to_builtins(uptime(history, T0 - timedelta(hours=1), T0 + timedelta(hours=5)))

    assert len(result["records"]) == 1
    assert result["totalSeconds"] == (60 + 20) * 60
    assert result["uptimeFraction"] == round(80 / 360, 6)
