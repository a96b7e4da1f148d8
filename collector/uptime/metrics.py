"""Metrics points: one per accepted heartbeat (written with its window step in
collector/uptime/windows.py), the series the worker client charts. They are kept for
``metrics_retention_days``; the sweeper deletes older ones. A worker's credits stay: each
point's credit was added to the worker's total when it was earned, and the credits of the
points that go are added to their worker's UTC day in ``worker_credit_days``, so a report
or payout of any past month still sums them exactly."""

from datetime import datetime, timedelta

from peewee import EXCLUDED, fn

from collector.store.db import database
from collector.store.models import CreditDay, WorkerMetric


def prune(*, retention: timedelta, now: datetime) -> int:
    """Delete every point older than ``retention``, keeping its credits by day; return how
    many went."""
    cutoff = now - retention
    old = WorkerMetric.timestamp < cutoff
    with database.atomic():
        # One indexed range (worker_metrics_time): run every sweep interval, a pass sees only
        # the points that aged past the limit since the previous one. A day can be summed in
        # several passes, so each adds to what is there.
        day = fn.DATE(WorkerMetric.timestamp)
        sums = (
            WorkerMetric.select(WorkerMetric.worker, day, fn.SUM(WorkerMetric.credits_millis))
            .where(old)
            .group_by(WorkerMetric.worker, day)
        )
        CreditDay.insert_from(
            sums, [CreditDay.worker, CreditDay.day, CreditDay.credits_millis]
        ).on_conflict(
            conflict_target=[CreditDay.worker, CreditDay.day],
            update={CreditDay.credits_millis: CreditDay.credits_millis + EXCLUDED.credits_millis},
        ).execute()
        return WorkerMetric.delete().where(old).execute()
