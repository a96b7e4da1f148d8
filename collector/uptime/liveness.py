"""The collector's own liveness: when it was not running, workers could not be heard.

Each serving process keeps a ``collector_runs`` row and moves its ``alive_at`` forward every
``liveness_interval`` seconds. A span that no run covers is an outage of the collector: the
reports show a worker's downtime inside one as the collector's, not the worker's (an agent
with a spool replays its heartbeats afterwards, and then there is no downtime to show).
"""

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from collector.store.db import DATABASE_DOWN, database, failure_reason
from collector.store.models import CollectorRun

log = logging.getLogger(__name__)


# A run counts as alive until its next beat was due, and one beat more: a process busy for
# a moment is not an outage.
BEATS_OF_GRACE = 2


def covered_until(run: CollectorRun, interval: timedelta) -> datetime:
    return run.alive_at + BEATS_OF_GRACE * interval


def outages(
    start: datetime, end: datetime, *, interval: timedelta, now: datetime
) -> list[tuple[datetime, datetime]]:
    """The spans within [start, end) in which no collector process was alive. Before the
    first run ever recorded nothing is known, so nothing there is an outage."""
    end = min(end, now)
    first = CollectorRun.select(CollectorRun.started_at).order_by(CollectorRun.started_at).first()
    if first is None or end <= start:
        return []
    runs = (
        CollectorRun.select()
        .where(
            (CollectorRun.alive_at >= start - BEATS_OF_GRACE * interval)
            & (CollectorRun.started_at < end)
        )
        .order_by(CollectorRun.started_at)
    )
    found = []
    cursor = max(start, first.started_at)
    for run in runs:
        if run.started_at > cursor:
            found.append((cursor, min(run.started_at, end)))
        cursor = max(cursor, covered_until(run, interval))
        if cursor >= end:
            break
    if cursor < end:
        found.append((cursor, end))
    return [(a, b) for a, b in found if b > a]


# Runs are kept past the longest report (366 days, collector/money/reports.py) with a margin.
RUNS_KEPT = timedelta(days=400)


def prune_runs(now: datetime) -> int:
    """Delete the runs last alive more than RUNS_KEPT ago, but the latest of them; return how
    many went. ``outages`` over any period inside RUNS_KEPT reads no deleted run, and the one
    kept keeps the first recorded run before the period, so such a report is unchanged. Older
    downtime keeps its length; it is no longer told apart as the collector's."""
    old = CollectorRun.alive_at < now - RUNS_KEPT
    latest = (
        CollectorRun.select(CollectorRun.id)
        .where(old)
        .order_by(CollectorRun.alive_at.desc(), CollectorRun.id.desc())
        .limit(1)
    )
    return CollectorRun.delete().where(old & CollectorRun.id.not_in(latest)).execute()


class LivenessThread(threading.Thread):
    """Records this process's run, and moves its ``alive_at`` every ``interval``."""

    def __init__(self, *, interval: timedelta, clock: Callable[[], datetime]):
        super().__init__(name="tassium-liveness", daemon=True)
        self.interval = interval
        self.clock = clock
        self.run_id: int | None = None
        self.stopped = threading.Event()

    def beat(self) -> None:
        now = self.clock()
        with database.connection_context():
            if self.run_id is None:
                self.run_id = CollectorRun.create(
                    host=socket.gethostname()[:255], pid=os.getpid(), started_at=now, alive_at=now
                ).id
            else:
                CollectorRun.update(alive_at=now).where(CollectorRun.id == self.run_id).execute()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.beat()
            except DATABASE_DOWN as exc:
                # The outage is the database's, and shows as one of the collector's.
                log.warning("liveness not recorded, database unavailable: %s", failure_reason(exc))
            except Exception:
                log.exception("liveness not recorded; trying again in %s", self.interval)
            self.stopped.wait(self.interval.total_seconds())

    def stop(self) -> None:
        self.stopped.set()
