"""collector/money/reports.py: uptime, downtime and its causes, on hand-computed cases (the JSON and
CSV routes are test_report_routes.py's). The windows are written as rows or through
collector/uptime/windows.py, and ``now`` is explicit, so every figure below can be checked with a
pencil."""

from datetime import UTC, datetime, timedelta

import pytest

from collector.config import CollectorConfig
from collector.money import reports
from collector.money.reports import (
    AGENT_SILENT,
    COLLECTOR_DOWN,
    DOCKER_UNAVAILABLE,
    Interval,
    Period,
)
from collector.store.models import CollectorRun, OpenWindow, UptimeRecord, Worker, WorkerMetric
from collector.uptime.windows import apply_heartbeat
from protocol.heartbeat import AgentInfo
from tests.collector.uptime.test_windows import GAP, beat
from tests.factories import new_wallet

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
LIVENESS = timedelta(seconds=10)
H, M = timedelta(hours=1), timedelta(minutes=1)


def worker(created: datetime = T0, **fields) -> str:
    wallet = new_wallet()
    Worker.create(wallet_address=wallet, created_at=created, **fields)
    return wallet


def record(wallet: str, start: datetime, end: datetime) -> None:
    UptimeRecord.create(worker=wallet, time_from=start, time_to=end)


def report(wallet: str, period: Period, now: datetime) -> reports.WorkerReport:
    return reports.worker_report(wallet, period, now=now, gap=GAP, liveness_interval=LIVENESS)


def interval(start: datetime, end: datetime) -> Period:
    return Period(start, end, "test")


def beats(wallet: str, start: datetime, end: datetime, docker: bool = True) -> None:
    """A heartbeat every 5 minutes from start to end, inclusive."""
    ts = start
    while ts <= end:
        agent = AgentInfo(dockerAvailable=docker)
        apply_heartbeat(beat(wallet, ts, agent=agent), gap=GAP, now=ts)
        ts += 5 * M


# --- periods ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026-11", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("2028-02", datetime(2028, 2, 1, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC)),
        ("2027-02", datetime(2027, 2, 1, tzinfo=UTC), datetime(2027, 3, 1, tzinfo=UTC)),
        ("24h", T0 - timedelta(hours=24), T0),
        ("7d", T0 - timedelta(days=7), T0),
        ("30d", T0 - timedelta(days=30), T0),
        (
            "2026-11-01T06:00:00+02:00/2026-11-02T00:00:00Z",
            datetime(2026, 11, 1, 4, tzinfo=UTC),
            datetime(2026, 11, 2, tzinfo=UTC),
        ),
    ],
)
def test_a_period_is_a_rolling_span_a_utc_month_or_an_interval(text, start, end):
    period = Period.parse(text, now=T0)
    assert (period.start, period.end) == (start, end)


@pytest.mark.parametrize(
    "text",
    [
        "2026-13",
        "2026-00",
        "1w",
        "",
        "2026-11-01T00:00:00Z/2026-11-01T00:00:00Z",
        "2026-11-02T00:00:00Z/2026-11-01T00:00:00Z",
        "2025-01-01T00:00:00Z/2026-11-01T00:00:00Z",
        "2026-11-01/2026-11-02",
    ],
)
def test_anything_else_is_refused_with_a_reason(text):
    with pytest.raises(ValueError, match="period"):
        Period.parse(text, now=T0)


def test_whole_days_are_the_utc_days_wholly_inside():
    assert Period.parse("2026-11", T0).whole_days == (
        datetime(2026, 11, 1).date(),
        datetime(2026, 12, 1).date(),
    )
    rolling = Period.parse("24h", T0 + 6 * H)  # 2026-11-23 06:00 to 2026-11-24 06:00
    assert rolling.whole_days == (datetime(2026, 11, 24).date(), datetime(2026, 11, 24).date())


# --- uptime and downtime ----------------------------------------------------------------------


def test_windows_across_the_months_edges_count_only_inside(dbconn):
    november = Period.parse("2026-11", T0)
    nov1, dec1 = november.start, november.end
    wallet = worker(created=datetime(2026, 10, 1, tzinfo=UTC), last_heartbeat_at=dec1 + H)
    record(wallet, nov1 - H, nov1 + H)  # one hour inside
    record(wallet, datetime(2026, 11, 10, tzinfo=UTC), datetime(2026, 11, 10, 12, tzinfo=UTC))
    OpenWindow.create(worker=wallet, start_time=dec1 - H, end_time=dec1 + H)  # one hour inside

    found = report(wallet, november, now=dec1 + timedelta(days=4))

    assert found.observed == (nov1, dec1)
    assert found.uptime_millis == (1 + 12 + 1) * 3600 * 1000
    assert found.observed_micros == 30 * 24 * 3600 * 10**6
    assert found.fraction == round(14 / (30 * 24), 6)
    assert found.downtime == [
        Interval(nov1 + H, datetime(2026, 11, 10, tzinfo=UTC), AGENT_SILENT),
        Interval(datetime(2026, 11, 10, 12, tzinfo=UTC), dec1 - H, AGENT_SILENT),
    ]


def test_the_open_window_counts_and_the_stretch_since_the_last_heartbeat_waits_for_the_gap(
    dbconn,
):
    wallet = worker(created=T0)
    beats(wallet, T0, T0 + 2 * H)
    day = Period.parse("24h", T0 + 2 * H + 3 * M)

    on_time = report(wallet, day, now=T0 + 2 * H + 3 * M)
    assert on_time.observed == (T0, T0 + 2 * H)
    assert (on_time.uptime_millis, on_time.fraction, on_time.downtime) == (2 * 3600_000, 1.0, [])

    # Past the gap the silence is downtime, though no sweep has closed the window yet.
    late = T0 + 2 * H + 31 * M
    silent = report(wallet, Period.parse("24h", late), now=late)
    assert silent.downtime == [Interval(T0 + 2 * H, late, AGENT_SILENT)]
    assert silent.fraction == round(120 / 151, 6)


def test_from_enrollment_to_the_first_heartbeat_is_setting_up_not_downtime(dbconn):
    wallet = worker(created=T0)
    apply_heartbeat(beat(wallet, T0 + 5 * M), gap=GAP, now=T0 + 5 * M)

    # One heartbeat is a moment: nothing observed yet, rather than 0 %.
    first = report(wallet, interval(T0, T0 + H), now=T0 + 6 * M)
    assert (first.observed, first.fraction, first.downtime) == (None, None, [])

    apply_heartbeat(beat(wallet, T0 + 10 * M), gap=GAP, now=T0 + 10 * M)
    second = report(wallet, interval(T0, T0 + H), now=T0 + 11 * M)
    assert (second.observed, second.fraction) == ((T0 + 5 * M, T0 + 10 * M), 1.0)


def test_a_worker_never_heard_from_is_down_since_its_enrollment(dbconn):
    wallet = worker(created=T0 + 5 * H)
    found = report(wallet, interval(T0, T0 + 10 * H), now=T0 + 10 * H)
    assert found.observed == (T0 + 5 * H, T0 + 10 * H)
    assert found.downtime == [Interval(T0 + 5 * H, T0 + 10 * H, AGENT_SILENT)]

    unknown_yet = report(wallet, interval(T0, T0 + 4 * H), now=T0 + 10 * H)
    assert (unknown_yet.observed, unknown_yet.fraction, unknown_yet.downtime) == (None, None, [])


def test_a_period_still_running_ends_now(dbconn):
    wallet = worker(created=T0 - timedelta(days=40), last_heartbeat_at=T0 - 2 * H)
    record(wallet, T0 - timedelta(days=35), T0 - timedelta(days=35) + H)
    record(wallet, T0 - 3 * H, T0 - 2 * H)
    november = Period.parse("2026-11", T0)
    found = report(wallet, november, now=T0)
    assert found.observed == (november.start, T0)
    assert found.uptime_millis == 3600_000
    assert found.downtime[-1] == Interval(T0 - 2 * H, T0, AGENT_SILENT)


def test_heartbeats_saying_docker_is_down_are_downtime_with_that_cause(dbconn):
    wallet = worker(created=T0)
    beats(wallet, T0, T0 + 30 * M)
    beats(wallet, T0 + 35 * M, T0 + 50 * M, docker=False)
    first_back = apply_heartbeat(beat(wallet, T0 + 55 * M), gap=GAP, now=T0 + 55 * M)
    beats(wallet, T0 + 60 * M, T0 + 90 * M)

    # Back within the gap, it opens a new window rather than counting the outage as uptime.
    assert first_back.action == "opened"
    assert first_back.credits_millis == 0
    found = report(wallet, interval(T0, T0 + 90 * M), now=T0 + 3 * H)
    assert found.uptime == [(T0, T0 + 30 * M), (T0 + 55 * M, T0 + 90 * M)]
    assert found.downtime == [Interval(T0 + 30 * M, T0 + 55 * M, DOCKER_UNAVAILABLE)]


def test_a_docker_outage_after_a_silence_starts_at_its_first_heartbeat(dbconn):
    wallet = worker(created=T0)
    beats(wallet, T0, T0 + 10 * M)
    beats(wallet, T0 + 2 * H, T0 + 2 * H + 10 * M, docker=False)
    found = report(wallet, interval(T0, T0 + 3 * H), now=T0 + 4 * H)
    assert found.downtime == [
        Interval(T0 + 10 * M, T0 + 2 * H, AGENT_SILENT),
        Interval(T0 + 2 * H, T0 + 2 * H + 10 * M, DOCKER_UNAVAILABLE),
        Interval(T0 + 2 * H + 10 * M, T0 + 3 * H, AGENT_SILENT),
    ]


def test_a_collector_outage_is_the_collectors_not_the_workers(dbconn):
    CollectorRun.create(host="a", pid=1, started_at=T0 - H, alive_at=T0 + H)
    CollectorRun.create(host="a", pid=2, started_at=T0 + 3 * H, alive_at=T0 + 6 * H)
    wallet = worker(created=T0)
    beats(wallet, T0, T0 + H)
    beats(wallet, T0 + 3 * H + 10 * M, T0 + 5 * H)

    found = report(wallet, interval(T0, T0 + 6 * H), now=T0 + 6 * H)

    # The last run beat at T0 + 1 h, and counts as alive for two beats more.
    down_from = T0 + H + 2 * LIVENESS
    assert found.downtime == [
        Interval(T0 + H, down_from, AGENT_SILENT),
        Interval(down_from, T0 + 3 * H, COLLECTOR_DOWN),
        Interval(T0 + 3 * H, T0 + 3 * H + 10 * M, AGENT_SILENT),
        Interval(T0 + 5 * H, T0 + 6 * H, AGENT_SILENT),
    ]


def test_a_replayed_spool_leaves_no_downtime_in_a_collector_outage(dbconn):
    CollectorRun.create(host="a", pid=1, started_at=T0 - H, alive_at=T0 + H)
    CollectorRun.create(host="a", pid=2, started_at=T0 + 3 * H, alive_at=T0 + 6 * H)
    wallet = worker(created=T0)
    beats(wallet, T0, T0 + 6 * H)  # the heartbeats of the outage arrive late, in order

    found = report(wallet, interval(T0, T0 + 6 * H), now=T0 + 7 * H)
    assert (found.fraction, found.downtime) == (1.0, [])


def test_overlapping_collector_runs_cover_each_other(dbconn):
    from collector.uptime.liveness import outages

    CollectorRun.create(host="a", pid=1, started_at=T0, alive_at=T0 + 2 * H)
    CollectorRun.create(host="b", pid=2, started_at=T0 + H, alive_at=T0 + 3 * H)
    CollectorRun.create(host="a", pid=3, started_at=T0 + 5 * H, alive_at=T0 + 6 * H)
    found = outages(T0 - H, T0 + 6 * H, interval=LIVENESS, now=T0 + 6 * H)
    # Nothing is known before the first run; the one gap is between the second and third.
    assert found == [(T0 + 3 * H + 2 * LIVENESS, T0 + 5 * H)]
    assert outages(T0 + 5 * H, T0 + 6 * H, interval=LIVENESS, now=T0 + 8 * H) == []
    assert outages(T0, T0 + 9 * H, interval=LIVENESS, now=T0 + 8 * H)[-1] == (
        T0 + 6 * H + 2 * LIVENESS,
        T0 + 8 * H,
    )


# --- credits ----------------------------------------------------------------------------------


def test_credits_of_a_period_survive_the_metrics_retention(dbconn):
    from collector.uptime.metrics import prune

    wallet = worker(created=T0 - timedelta(days=3))
    beats(wallet, T0 - timedelta(days=2), T0 - timedelta(days=2) + 2 * H)
    beats(wallet, T0 - timedelta(days=1), T0 - timedelta(days=1) + 2 * H)
    earned = Worker.get_by_id(wallet).credits_millis
    month = Period.parse("2026-11", T0)
    before = report(wallet, month, now=T0).credits_millis
    assert before == earned > 0

    # Two passes, the second past more points of the same days: each adds to the day.
    prune(retention=timedelta(days=1) + 3 * H, now=T0)
    prune(retention=timedelta(days=1), now=T0 + 3 * H)

    assert report(wallet, month, now=T0 + 3 * H).credits_millis == earned
    day = report(wallet, interval(T0 - timedelta(days=1), T0), now=T0 + 3 * H)
    assert day.credits_millis == earned // 2


# --- flags (collector/uptime/capacity.py) -----------------------------------------------------


def test_credits_above_five_times_the_fleets_median_per_uptime_hour_are_flagged(dbconn):
    day = T0 - timedelta(days=1)
    # Credits per hour of uptime 100, 120, 100, 601 and 599 (the last two up two hours): the
    # median is 120, so above 600 is an outlier.
    earned = {}
    for credits, hours in ((100, 1), (120, 1), (100, 1), (1202, 2), (1198, 2)):
        wallet = worker(day, last_heartbeat_at=day + hours * H)
        record(wallet, day, day + hours * H)
        WorkerMetric.create(
            worker=wallet, timestamp=day + M, container_count=1, credits_millis=credits * 1000
        )
        earned[credits] = wallet
    timing = {"now": T0 + H, "gap": GAP, "liveness_interval": LIVENESS}

    found = reports.fleet(interval(day, T0), bounds=CollectorConfig(), **timing)
    flags = {r.wallet: r.flags for r in found}
    assert flags[earned[1202]] == (reports.CREDITS_OUTLIER,)
    assert [flags[earned[c]] for c in (100, 120, 1198)] == [(), (), ()]
    # Without the operator's bounds (a payout's reading), no flags and no median read.
    assert all(r.flags == () for r in reports.fleet(interval(day, T0), **timing))
