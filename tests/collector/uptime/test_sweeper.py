"""collector/uptime/sweeper.py: the lease that lets exactly one process sweep, one tick of the
interval job, and the sweeper thread running for real (directly with a clock we pass, and inside a
served collector). The ``sweep`` command is covered in test_cli.py."""

import logging
from datetime import datetime, timedelta

import httpx
import pytest

from collector.store import migrations
from collector.store.models import (
    CollectorRun,
    EnrollmentToken,
    OpenWindow,
    SweeperLease,
    UptimeRecord,
    Worker,
    WorkerMetric,
)
from collector.uptime import enrollment, liveness
from collector.uptime.enrollment import enroll, issue_token
from collector.uptime.liveness import outages
from collector.uptime.sweeper import (
    LEASE,
    SweeperThread,
    Swept,
    claim_lease,
    sweep_if_leader,
    sweep_pass,
)
from protocol.times import format_timestamp, utcnow
from tests.collector.uptime.test_windows import (
    GAP,
    T0,
    US,
    apply,
    create_worker,
    stored_records,
    stored_window,
)
from tests.factories import FakeWorker, connected, enroll_with_token
from tests.polling import wait_for

TTL = timedelta(minutes=3)
INTERVAL = timedelta(minutes=1)
RETENTION = timedelta(days=30)


def lease() -> tuple[str, object] | None:
    row = SweeperLease.get_or_none(SweeperLease.name == LEASE)
    return (row.holder, row.expires_at) if row is not None else None


# --- the lease --------------------------------------------------------------------------------


def test_the_first_holder_gets_the_lease(dbconn):
    assert claim_lease("a", T0, TTL) is True
    assert lease() == ("a", T0 + TTL)


@pytest.mark.parametrize(
    "later", [timedelta(0), TTL - timedelta(seconds=1), TTL], ids=["at-once", "near-end", "at-end"]
)
def test_a_second_holder_is_refused_while_the_lease_is_valid(dbconn, later):
    claim_lease("a", T0, TTL)

    assert claim_lease("b", T0 + later, TTL) is False
    assert lease() == ("a", T0 + TTL)


def test_a_second_holder_takes_over_after_expiry_and_the_first_is_then_refused(dbconn):
    claim_lease("a", T0, TTL)
    expired = T0 + TTL + US

    assert claim_lease("b", expired, TTL) is True
    assert lease() == ("b", expired + TTL)
    assert claim_lease("a", expired + timedelta(seconds=1), TTL) is False
    assert lease() == ("b", expired + TTL)


def test_the_holder_renews_its_lease_and_keeps_others_out_longer(dbconn):
    claim_lease("a", T0, TTL)
    renewed = T0 + timedelta(minutes=2)

    assert claim_lease("a", renewed, TTL) is True
    assert lease() == ("a", renewed + TTL)
    # Past the first expiry, but not the renewed one.
    assert claim_lease("b", T0 + TTL + US, TTL) is False


def test_the_holder_may_renew_even_after_its_lease_ran_out(dbconn):
    claim_lease("a", T0, TTL)
    late = T0 + 2 * TTL

    assert claim_lease("a", late, TTL) is True
    assert lease() == ("a", late + TTL)


# --- one tick ---------------------------------------------------------------------------------


def tick(holder: str, now: datetime) -> Swept | None:
    return sweep_if_leader(holder, gap=GAP, retention=RETENTION, interval=INTERVAL, now=now)


@pytest.fixture
def stale_windows(dbconn):
    """Two windows that went silent at T0 and one still fresh at T0+1h; ticks run at T0+1h."""
    stale = [create_worker(), create_worker()]
    fresh = create_worker()
    for wallet in stale:
        apply(wallet, T0)
    apply(fresh, T0 + timedelta(hours=1))
    return stale, fresh


def test_sweep_if_leader_returns_none_for_a_non_leader_and_closes_nothing(stale_windows):
    stale, _ = stale_windows
    now = T0 + timedelta(hours=1)
    claim_lease("a", now, 3 * INTERVAL)

    assert tick("b", now) is None

    assert [stored_window(w) for w in stale] == [(T0, T0), (T0, T0)]
    assert UptimeRecord.select().count() == 0
    assert lease() == ("a", now + 3 * INTERVAL)


def test_sweep_if_leader_returns_the_count_for_the_leader(stale_windows):
    stale, fresh = stale_windows
    now = T0 + timedelta(hours=1)

    assert tick("a", now) == Swept(closed=2, pruned=0)
    assert tick("a", now + INTERVAL) == Swept(closed=0, pruned=0)

    assert [stored_records(w) for w in stale] == [[(T0, T0)], [(T0, T0)]]
    assert stored_window(fresh) is not None


def test_the_leaders_tick_also_deletes_metrics_points_past_their_retention(dbconn):
    wallet = create_worker()
    apply(wallet, T0)
    apply(wallet, T0 + timedelta(minutes=5))
    credits = Worker.get_by_id(wallet).credits_millis
    now = T0 + RETENTION + timedelta(minutes=1)
    claim_lease("b", now, 3 * INTERVAL)

    assert tick("a", now) is None
    assert WorkerMetric.select().count() == 2

    assert tick("b", now) == Swept(closed=1, pruned=1)
    assert [p.timestamp for p in WorkerMetric.select()] == [T0 + timedelta(minutes=5)]
    assert Worker.get_by_id(wallet).credits_millis == credits


def test_a_leader_that_stops_ticking_is_replaced_after_three_intervals(stale_windows):
    now = T0 + timedelta(hours=1)
    tick("a", now)

    assert tick("b", now + 3 * INTERVAL) is None
    # A count, not None: b leads now, though the fresh window is not stale yet.
    assert tick("b", now + 3 * INTERVAL + US) == Swept(closed=0, pruned=0)
    assert lease()[0] == "b"


# --- the thread -------------------------------------------------------------------------------


@pytest.fixture
def start_sweeper():
    """Start SweeperThreads; every one still running is stopped (and joined) afterwards."""
    threads = []

    def start(**kwargs) -> SweeperThread:
        thread = SweeperThread(**{"retention": RETENTION, **kwargs})
        threads.append(thread)
        thread.start()
        return thread

    yield start
    for thread in threads:
        thread.stop()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()


def test_a_sweeper_thread_closes_a_stale_window(dbconn, start_sweeper):
    wallet = create_worker()
    apply(wallet, T0)
    apply(wallet, T0 + timedelta(minutes=5))
    now = T0 + timedelta(hours=1)

    thread = start_sweeper(
        gap=GAP,
        retention=timedelta(minutes=58),
        interval=timedelta(milliseconds=20),
        clock=lambda: now,
    )

    wait_for(lambda: stored_window(wallet) is None, "the sweeper thread closing the window")
    thread.stop()
    thread.join(timeout=30)
    assert stored_records(wallet) == [(T0, T0 + timedelta(minutes=5))]
    # Older than 58 minutes at T0+1h: the first point went, the second stayed.
    assert [p.timestamp for p in WorkerMetric.select()] == [T0 + timedelta(minutes=5)]
    assert lease() == (thread.holder, now + 3 * timedelta(milliseconds=20))


def test_a_sweeper_thread_keeps_going_after_a_database_error(
    empty_database_url, start_sweeper, caplog
):
    caplog.set_level(logging.WARNING, logger="collector.uptime.sweeper")
    with connected(empty_database_url) as database:
        # No tables yet: every tick fails until the schema exists.
        thread = start_sweeper(
            gap=GAP, interval=timedelta(milliseconds=20), clock=lambda: T0 + timedelta(hours=1)
        )
        wait_for(
            lambda: any(r.getMessage().startswith("sweep") for r in caplog.records),
            "a failed tick being logged",
        )
        migrations.migrate(database)
        wallet = create_worker()
        apply(wallet, T0)

        wait_for(lambda: stored_window(wallet) is None, "the thread sweeping after all")
        thread.stop()
        thread.join(timeout=30)
        assert stored_records(wallet) == [(T0, T0)]


# --- inside a served collector ----------------------------------------------------------------


def test_the_served_collectors_sweeper_closes_a_stale_window_once(serve_collector, database_url):
    worker = FakeWorker()
    with connected(database_url):
        enroll_with_token(worker.wallet, worker.public_key)
    collector = serve_collector(gap=1, sweep_interval=1, processes=2)
    ts = utcnow()
    raw, headers = worker.signed(worker.heartbeat_body(ts))

    response = httpx.post(collector.url + "/heartbeat", content=raw, headers=headers, timeout=10)
    assert response.status_code == 200, response.text

    def uptime() -> dict:
        return httpx.get(f"{collector.url}/workers/{worker.wallet}/uptime", timeout=10).json()

    wait_for(lambda: uptime()["openWindow"] is None, "the served sweeper closing the window")
    stamp = format_timestamp(ts)
    assert uptime()["records"] == [{"timeFrom": stamp, "timeTo": stamp}]
    with connected(database_url):
        # Two processes each run the loop; the lease lets one sweep, and nothing closes twice.
        assert UptimeRecord.select().count() == 1
        assert OpenWindow.select().count() == 0
        assert lease() is not None


# --- retention of what grows without bound ------------------------------------------------------


def sweep_at(now: datetime) -> Swept:
    return sweep_pass(gap=GAP, retention=RETENTION, now=now)


def test_a_pass_deletes_collector_runs_past_retention_but_the_latest_and_reports_are_unchanged(
    dbconn,
):
    now = T0 + timedelta(days=800)
    kept = liveness.RUNS_KEPT
    # One process a day from T0, up by 12:00 (so every afternoon is an outage), and a run
    # of the last hour.
    day = timedelta(days=1)
    for n in range(800):
        started = T0 + n * day
        CollectorRun.create(host="h", pid=n, started_at=started, alive_at=started + day / 2)
    CollectorRun.create(host="h", pid=800, started_at=now - timedelta(hours=1), alive_at=now)
    interval = timedelta(seconds=10)
    # The longest report reaches back 366 days; a month at the edge of the retention too.
    periods = [(now - timedelta(days=366), now), (now - kept, now - kept + timedelta(days=30))]
    before = [outages(a, b, interval=interval, now=now) for a, b in periods]

    swept = sweep_at(now)

    last_alive = sorted(r.alive_at for r in CollectorRun.select())
    old = [t for t in last_alive if t < now - kept]
    # Every run last alive within the retention, and the latest before it.
    assert len(old) == 1 and old[0] > now - kept - day
    assert swept.expired == 801 - len(last_alive)
    assert [outages(a, b, interval=interval, now=now) for a, b in periods] == before
    assert sweep_at(now).expired == 0


def test_a_pass_deletes_enrollment_tokens_a_week_past_expiry(dbconn):
    wallet = create_worker()
    now = T0 + timedelta(days=30)
    week = enrollment.TOKENS_KEPT
    expiries = {
        "gone": now - week - US,
        "kept": now - week,
        "expired": now - timedelta(hours=1),
        "valid": now + timedelta(hours=1),
    }
    tokens = {name: issue_token(wallet, at - now, now) for name, at in expiries.items()}
    assert enroll(wallet, FakeWorker(wallet).public_key, now, token=tokens["valid"])

    assert sweep_at(now).expired == 1

    left = {t.expires_at for t in EnrollmentToken.select()}
    assert left == {expiries[name] for name in ("kept", "expired", "valid")}
