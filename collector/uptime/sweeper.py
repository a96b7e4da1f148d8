"""The interval sweeper inside the serving processes: each pass closes the windows silent
past the gap and deletes what is past its retention (metrics points, collector runs,
enrollment tokens).

Every process runs the loop, but only the holder of the lease sweeps: the lease is a row
claimed by a conditional update, so exactly one process sweeps at a time even across hosts,
and another takes over when the holder dies and its lease runs out.
"""

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from collector.counters import DATABASE_ERRORS, SWEEPS, WINDOWS_CLOSED
from collector.identity import sign_in
from collector.projects import deployments
from collector.store.db import DATABASE_DOWN, database, failure_reason
from collector.store.models import SweeperLease
from collector.uptime import enrollment, liveness, metrics
from collector.uptime.windows import sweep
from collector.web import ratelimits

log = logging.getLogger(__name__)
LEASE = "sweeper"


def claim_lease(holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the sweeper lease; True when ``holder`` holds it until ``now + ttl``."""
    with database.atomic():
        SweeperLease.insert(
            name=LEASE, holder=holder, expires_at=now + ttl
        ).on_conflict_ignore().execute()
        changed = (
            SweeperLease.update(holder=holder, expires_at=now + ttl)
            .where(
                (SweeperLease.name == LEASE)
                & ((SweeperLease.holder == holder) | (SweeperLease.expires_at < now))
            )
            .execute()
        )
    return changed == 1


@dataclass(frozen=True)
class Swept:
    closed: int  # windows silent longer than the gap, now uptime records
    pruned: int  # metrics points older than the retention, deleted
    failed: int = 0  # deployments whose build the collector lost track of, now failed
    # collector runs, enrollment tokens and challenges, and rate-limit windows past their
    # retention, deleted
    expired: int = 0


def sweep_pass(
    *,
    gap: timedelta,
    retention: timedelta,
    now: datetime,
    build_timeout: timedelta | None = None,
) -> Swept:
    """One pass, as the interval job and ``tassium-collector sweep`` run it. With a deployer
    (``build_timeout``), builds nobody waits for any more are failed too."""
    closed = sweep(gap=gap, now=now)
    pruned = metrics.prune(retention=retention, now=now)
    failed = deployments.fail_lost_builds(build_timeout, now) if build_timeout else 0
    expired = (
        liveness.prune_runs(now)
        + enrollment.prune_tokens(now)
        + enrollment.prune_challenges(now)
        + ratelimits.prune(now)
        + sign_in.prune(now)
    )
    SWEEPS.inc()
    WINDOWS_CLOSED.inc(closed)
    return Swept(closed, pruned, failed, expired)


def sweep_if_leader(
    holder: str,
    *,
    gap: timedelta,
    retention: timedelta,
    interval: timedelta,
    now: datetime,
    build_timeout: timedelta | None = None,
) -> Swept | None:
    """One tick of the interval job: what the pass did, or None when another process holds
    the lease."""
    if not claim_lease(holder, now, ttl=interval * 3):
        return None
    return sweep_pass(gap=gap, retention=retention, now=now, build_timeout=build_timeout)


class SweeperThread(threading.Thread):
    def __init__(
        self,
        *,
        gap: timedelta,
        retention: timedelta,
        interval: timedelta,
        clock,
        build_timeout: timedelta | None = None,
    ):
        super().__init__(name="tassium-sweeper", daemon=True)
        self.gap = gap
        self.retention = retention
        self.build_timeout = build_timeout
        self.interval = interval
        self.clock = clock
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                with database.connection_context():
                    swept = sweep_if_leader(
                        self.holder,
                        gap=self.gap,
                        retention=self.retention,
                        interval=self.interval,
                        now=self.clock(),
                        build_timeout=self.build_timeout,
                    )
                if swept and swept.closed:
                    log.info("sweeper closed %d idle windows", swept.closed)
                if swept and swept.pruned:
                    log.info("sweeper deleted %d metrics points past retention", swept.pruned)
                if swept and swept.expired:
                    log.info("sweeper deleted %d rows past their retention", swept.expired)
                if swept and swept.failed:
                    log.warning("sweeper failed %d deployments with lost builds", swept.failed)
            except DATABASE_DOWN as exc:
                DATABASE_ERRORS.labels(where="sweeper").inc()
                log.warning("sweep skipped, database unavailable: %s", failure_reason(exc))
            except Exception:  # a database hiccup must not end the sweeper for good
                log.exception("sweep failed; trying again in %s", self.interval)
            self.stopped.wait(self.interval.total_seconds())

    def stop(self) -> None:
        self.stopped.set()
