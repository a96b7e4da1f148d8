"""Time on the collector's scale.

Heartbeats are judged by the collector's clock (refused beyond its skew, stale when not later
than the last one), and many workers are cheap VMs without NTP. So the agent reads the wall
clock once, carries it forward with a clock that no one can step (CLOCK_BOOTTIME, which also
counts a suspended VM's sleep), and adds the offset it measures from the collector's answers:
a local clock that is wrong, or set back an hour while the agent runs, neither gets
heartbeats refused nor makes them stale.
"""

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

log = logging.getLogger(__name__)

# Measurements closer than this to the offset in use are noise (network delay, the HTTP
# Date header's whole seconds), not a clock that moved.
TOLERANCE = 1.0


def _steady() -> float:
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):  # not Linux
        return time.monotonic()


class CollectorClock:
    def __init__(
        self,
        offset: float | None = None,
        *,
        wall: Callable[[], float] = time.time,
        steady: Callable[[], float] = _steady,
    ):
        self._wall = wall
        self._steady = steady
        self._anchor = self._wall_anchor = wall() - steady()
        self.offset = offset  # collector minus local seconds; None until measured or restored
        self._last: datetime | None = None
        self._lock = threading.Lock()

    def local(self) -> float:
        """The local time as it was at start, carried forward steadily (POSIX seconds)."""
        return self._anchor + self._steady()

    def wall_jump(self) -> float:
        """How far the machine's wall clock was stepped since the last call, or 0: what a
        scheduler that reads the wall clock (APScheduler does) must be told about. NTP's
        slow slewing never adds up to a jump between two calls."""
        anchor = self._wall() - self._steady()
        jump, self._wall_anchor = anchor - self._wall_anchor, anchor
        return jump if abs(jump) > TOLERANCE else 0.0

    def now(self) -> datetime:
        """The collector's time now as best known, strictly later than the last one given, so
        two heartbeats never share a timestamp (the collector would take the second for a
        replay)."""
        with self._lock:
            moment = datetime.fromtimestamp(self.local() + (self.offset or 0.0), UTC)
            if self._last is not None and moment <= self._last:
                moment = self._last + timedelta(milliseconds=1)
            self._last = moment
            return moment

    def observe(self, server_time: datetime, sent: float, received: float) -> bool:
        """Learn from an answer: ``server_time`` was read by the collector between ``sent``
        and ``received`` (values of ``local()``). Returns whether the offset changed."""
        measured = server_time.timestamp() - (sent + received) / 2
        uncertainty = (received - sent) / 2 + TOLERANCE
        with self._lock:
            if self.offset is not None and abs(measured - self.offset) <= uncertainty:
                return False
            previous, self.offset = self.offset, measured
        if previous is None:
            level = logging.WARNING if abs(measured) > 10 else logging.INFO
            log.log(level, "this machine's clock differs from the collector's by %+.1f s", measured)
        else:
            log.warning(
                "the clock offset to the collector changed from %+.1f s to %+.1f s",
                previous,
                measured,
            )
        return True
