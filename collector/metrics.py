"""Metrics points: one per accepted heartbeat (written with its window step in
collector/windows.py), the series the worker client charts. They are kept for
``metrics_retention_days``; the sweeper deletes older ones. A worker's credits stay: each
point's credit was added to the worker's total when it was earned."""

from datetime import datetime, timedelta

from collector.models import WorkerMetric


def prune(*, retention: timedelta, now: datetime) -> int:
    """Delete every point older than ``retention``; return how many went."""
    # One indexed range delete (worker_metrics_time): run every sweep interval, it removes
    # only the points that aged past the limit since the previous pass.
    return WorkerMetric.delete().where(WorkerMetric.timestamp < now - retention).execute()
