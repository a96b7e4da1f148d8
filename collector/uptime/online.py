"""Online: a worker whose last heartbeat is within the gap, the same rule that keeps its
window open. Written once, as a test of one worker and as a query condition, for the routes
(collector/uptime/workers.py), the dashboard and the /metrics gauges alike."""

from datetime import datetime, timedelta

from peewee import Expression

from collector.store.models import Worker


def heard_within(worker: Worker, now: datetime, gap: int) -> bool:
    """Whether ``worker``'s last heartbeat is at most ``gap`` seconds before ``now``."""
    last = worker.last_heartbeat_at
    return last is not None and now - last <= timedelta(seconds=gap)


def online_since(now: datetime, gap: int) -> Expression:
    """heard_within as a query condition, for counting a fleet without loading it."""
    return Worker.last_heartbeat_at >= now - timedelta(seconds=gap)
