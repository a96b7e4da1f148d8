"""Which heartbeats' time the collector can vouch for, and so pays for.

A heartbeat says when it was taken; the collector knows only when it arrived. One that
arrives as it is taken (within ``max_skew``) was seen happening. One that arrives later was
held somewhere: in the agent's spool while the collector was down, which must cost the
worker nothing, or anywhere at all while the worker could not reach a collector that was
running, or written afterwards, which must earn nothing. The collector's own liveness
(collector/uptime/liveness.py) tells these apart: a late heartbeat is credited only if the collector
was not taking heartbeats at some moment between when it was taken and ``max_skew`` after,
the time an agent that was up had to deliver it. Nothing stamped before the worker enrolled
(or, unsigned, was first seen) is credited at all.

A heartbeat that is not vouched for is still stored, as evidence (its metrics point, the
worker's last heartbeat and containers), but it opens, extends and reopens no window.

Example, with ``max_skew`` 2 minutes: an agent beats every 5 minutes; the collector is down
from 10:00 to 10:40. The heartbeats taken at 10:05 ... 10:35 arrive at 10:41 from the spool,
each within an outage at its time: all credited, and the window runs on through the outage.
A worker whose own network is cut from 10:00 to 10:40 replays the same heartbeats at 10:41,
but the collector was taking heartbeats all along: they are stored, not credited, and its
window closes at 09:55.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from collector.store.models import Worker
from collector.uptime import liveness


@dataclass(frozen=True)
class Vouching:
    max_skew: timedelta
    liveness_interval: timedelta

    def judge(self, timestamps: Iterable[datetime], now: datetime) -> "Verdicts":
        """What the collector can say about a group of heartbeats taken at ``timestamps``:
        its outages since the earliest late one, read once for the group."""
        late = [ts for ts in timestamps if now - ts > self.max_skew]
        outages = (
            liveness.outages(min(late), now, interval=self.liveness_interval, now=now)
            if late
            else []
        )
        return Verdicts(self.max_skew, now, outages)


@dataclass(frozen=True)
class Verdicts:
    max_skew: timedelta
    now: datetime
    outages: list[tuple[datetime, datetime]]

    def vouches(self, worker: Worker, ts: datetime) -> bool:
        """Whether the time up to ``ts`` may be credited to ``worker``."""
        # The clock may be off by max_skew either way: an agent beating as it enrolls is not
        # before its enrollment.
        joined = worker.enrolled_at or worker.created_at
        if joined is not None and ts < joined - self.max_skew:
            return False
        if self.now - ts <= self.max_skew:
            return True
        until = ts + self.max_skew
        return any(start < until and end > ts for start, end in self.outages)
