"""The daemon's jobs on APScheduler 3 (a ``BackgroundScheduler``), as DESIGN.md names it:

- Each job runs at once at start, then on a fixed grid, start + k × interval
  (``GridTrigger``), each run delayed by a fresh random part of ``jitter`` seconds so that a
  fleet does not beat in lockstep. The stock ``IntervalTrigger`` adds its jitter to the
  previous (already jittered) run time, so the delays add up and the ticks drift off the
  grid, by half the jitter per interval on average; ``GridTrigger`` draws each delay from
  its grid point.
- ``max_instances=1``: a run still going when its next time comes is never doubled; that
  time is skipped, as are the grid points a long run covered (``GridTrigger`` never returns
  one already past).
- ``coalesce=True``: runs missed while the process could not run (a VM paused, a wall clock
  stepped forward) are one run, not a burst. ``GridTrigger`` already never offers a time
  that has passed, so at most one is due; coalescing says so to APScheduler as well.
- ``misfire_grace_time=None``: a late run always runs. A heartbeat late is still proof of
  life, while APScheduler's default of 1 s would drop a tick whenever its thread wakes more
  than a second late (a loaded worker, a VM resumed, a clock stepped forward): a gap in
  uptime for nothing. Coalescing already keeps lateness from turning into a burst.
- ``stop(timeout)`` starts no other run and gives those in progress a bounded time.

The wall clock. APScheduler decides what is due by the wall clock (its waits are steady,
but computed from wall-clock times), so a clock stepped back an hour would hold every job
for that hour, and one stepped forward shifts the grid. The owner of the schedule watches
for steps (``CollectorClock.wall_jump()``, a few seconds apart) and calls
``follow_wall_clock()``: every job is rescheduled on the grid it had on the steady clock, and
one whose grid point passed meanwhile runs at once. Until a step is noticed, a step back
holds a job by up to that delay, and a step forward can bring one run early (whenever the
scheduler next wakes); no run is lost, and none comes as a burst.

Only the submodules used are imported: each is resident memory on every worker."""

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)

# APScheduler logs two lines at INFO for every run, and a WARNING for every time skipped
# because the run before still goes: max_instances=1 does that on purpose here (a drain
# through a backlog outlasts many of its times), and a step that hangs is the watchdog's
# business (service.Liveness). Its errors still show.
logging.getLogger("apscheduler").setLevel(logging.ERROR)


def utcnow() -> datetime:
    return datetime.now(UTC)


def steady() -> float:
    """The steady clock CollectorClock.wall_jump() compares the wall clock with: it counts a
    suspended VM's sleep, so a resume is not taken for a step."""
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):  # not Linux
        return time.monotonic()


class GridTrigger(IntervalTrigger):
    """Fires at start + k × interval plus a random delay in [0, jitter] drawn for each k,
    never at a grid point already past."""

    def __init__(
        self,
        interval: float,
        start: datetime,
        jitter: float = 0.0,
        rng: random.Random | None = None,
    ):
        if not 0 <= jitter < interval:
            raise ValueError(f"jitter must be at least 0 and less than the interval {interval}")
        super().__init__(seconds=interval, start_date=start, timezone=UTC)
        self.grid_jitter = jitter
        self.rng = rng or random.Random()  # noqa: S311 - spreading a fleet, not a secret

    def grid_point(self, slot: int) -> datetime:
        return self.start_date + timedelta(seconds=slot * self.interval_length)

    def get_next_fire_time(self, previous_fire_time, now):
        start, length = self.start_date.timestamp(), self.interval_length
        slot = max(0, math.ceil((now.timestamp() - start) / length))
        if previous_fire_time is not None:
            # A run time lies within its grid point's jitter, less than an interval.
            last = math.floor((previous_fire_time.timestamp() - start) / length)
            slot = max(slot, last + 1)
        delay = self.rng.uniform(0, self.grid_jitter) if self.grid_jitter else 0.0
        return self.grid_point(slot) + timedelta(seconds=delay)


@dataclass
class _Job:
    name: str
    interval: float
    func: Callable[[], object]
    jitter: float
    last_begun: float | None = None  # steady clock


class Schedule:
    """Jobs run every so many seconds on APScheduler's threads, one thread a job: a slow job
    never delays another. ``now`` and ``steady`` are the wall and steady clocks (tests give
    their own); ``scheduler`` is open for tests to listen to its events."""

    def __init__(
        self,
        rng: random.Random | None = None,
        now: Callable[[], datetime] = utcnow,
        steady: Callable[[], float] = steady,
    ):
        # UTC: the grid is in seconds, and the local zone (tzlocal reads it) means nothing.
        self.scheduler = BackgroundScheduler(timezone=UTC)
        self.rng = rng or random.Random()  # noqa: S311 - spreading a fleet, not a secret
        self._now = now
        self._steady = steady
        self._jobs: dict[str, _Job] = {}
        self._origin: tuple[datetime, float] | None = None  # the grid's start, wall and steady
        self._running = 0
        self._stopped = False
        self._idle = threading.Condition()

    def every(
        self, name: str, interval: float, func: Callable[[], object], jitter: float = 0.0
    ) -> None:
        """Run ``func`` every ``interval`` seconds, each run delayed by up to ``jitter``
        seconds; add every job before ``start()``."""
        self._jobs[name] = _Job(name, interval, func, jitter)

    def start(self) -> None:
        now = self._now()
        self._origin = (now, self._steady())
        # As many threads as jobs: a job never waits for a thread another one holds.
        self.scheduler.add_executor(ThreadPoolExecutor(max_workers=max(1, len(self._jobs))))
        for job in self._jobs.values():
            self.scheduler.add_job(
                self._run,
                GridTrigger(job.interval, now, job.jitter, self.rng),
                args=(job,),
                id=job.name,
                name=job.name,
                next_run_time=now,  # the first run at once, without jitter
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        self.scheduler.start()

    def _run(self, job: _Job) -> None:
        with self._idle:
            if self._stopped:  # submitted just before stop(): not started
                return
            self._running += 1
            job.last_begun = self._steady()
        try:
            job.func()
        except Exception:
            log.exception("%s failed; it runs again at its next time", job.name)
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def run_now(self, name: str) -> None:
        """Run a job as soon as possible (skipped if it is running), then on its grid."""
        with self._idle:
            if not self._stopped:  # a stopped scheduler no longer knows its jobs
                self.scheduler.modify_job(name, next_run_time=self._now())

    def follow_wall_clock(self) -> dict[str, float]:
        """After the wall clock was stepped: put every job back on the grid it had on the
        steady clock, its next run the grid point after its last one (at once if that has
        passed). Returns the seconds until each job's next run."""
        now, steady = self._now(), self._steady()
        origin = now - timedelta(seconds=steady - self._origin[1])
        due = {}
        for job in self._jobs.values():
            trigger = GridTrigger(job.interval, origin, job.jitter, self.rng)
            last = None
            if job.last_begun is not None:
                last = origin + timedelta(seconds=job.last_begun - self._origin[1])
            upcoming = trigger.get_next_fire_time(last, last or now)
            self.scheduler.modify_job(job.name, trigger=trigger, next_run_time=upcoming)
            due[job.name] = max(0.0, (upcoming - now).total_seconds())
        return due

    def stop(self, timeout: float) -> bool:
        """Start no other run and wait up to ``timeout`` seconds for those in progress;
        True when none is left running."""
        with self._idle:
            self._stopped = True
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        with self._idle:
            return self._idle.wait_for(lambda: self._running == 0, timeout)
