"""collector/uptime/metrics.py: the retention of metrics points. The pass that runs it is tested in
test_sweeper.py (the interval job) and test_cli.py (``tassium-collector sweep``)."""

from datetime import timedelta

from collector.store.models import Worker, WorkerMetric
from collector.uptime.metrics import prune
from tests.collector.uptime.test_windows import T0, US, apply, create_worker

RETENTION = timedelta(days=30)


def points(wallet: str) -> list:
    query = WorkerMetric.select().where(WorkerMetric.worker == wallet)
    return [p.timestamp for p in query.order_by(WorkerMetric.timestamp)]


def test_points_older_than_the_retention_go_and_credits_stay(dbconn):
    wallet = create_worker()
    beats = [T0, T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)]
    for ts in beats:
        apply(wallet, ts)
    credits = Worker.get_by_id(wallet).credits_millis
    assert credits > 0

    # Exactly the retention old stays; a microsecond more goes.
    assert prune(retention=RETENTION, now=beats[1] + RETENTION + US) == 2

    assert points(wallet) == beats[2:]
    assert Worker.get_by_id(wallet).credits_millis == credits


def test_every_workers_old_points_go_in_one_pass(dbconn):
    old, recent = create_worker(), create_worker()
    apply(old, T0)
    apply(recent, T0 + RETENTION)

    assert prune(retention=RETENTION, now=T0 + RETENTION + timedelta(days=1)) == 1
    assert prune(retention=RETENTION, now=T0 + RETENTION + timedelta(days=1)) == 0

    assert (points(old), points(recent)) == ([], [T0 + RETENTION])


def test_a_worker_with_no_points_left_keeps_its_window(dbconn):
    wallet = create_worker()
    apply(wallet, T0)
    apply(wallet, T0 + timedelta(minutes=5))
    prune(retention=RETENTION, now=T0 + 2 * RETENTION)

    # The window goes on: the next heartbeat earns its stretch as usual.
    applied = apply(wallet, T0 + timedelta(minutes=10))
    assert applied.action == "extended"
    assert points(wallet) == [T0 + timedelta(minutes=10)]
