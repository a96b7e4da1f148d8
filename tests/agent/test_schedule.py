"""When the daemon's jobs run, on a clock the test sets: ticks on the grid start + k × interval,
each delayed by a random part of the jitter that never adds up; a slow run never doubled; missed
runs coalesced into one; a failing run logged and the job kept; a stop bounded in time; the
grid kept on the steady clock when the wall clock is stepped.

No test sleeps for a tick: the trigger is asked directly, or the scheduler is driven by a
fake clock (``FakeClock``) and each step waits for the scheduler's event saying what it did."""

import logging
import queue
import random
import threading
from datetime import UTC, datetime, timedelta

import apscheduler.schedulers.base
import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_SUBMITTED

from agent.schedule import GridTrigger, Schedule

START = datetime(2025, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)  # not on a whole second


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def offset(moment: datetime) -> float:
    return (moment - START).total_seconds()


# --- the trigger, asked directly ---------------------------------------------------------------


def test_ticks_fall_on_the_grid_and_a_long_run_skips_the_points_it_covered():
    trigger = GridTrigger(300, START)
    assert trigger.get_next_fire_time(None, at(-10)) == at(0)
    assert trigger.get_next_fire_time(None, at(1)) == at(300)
    assert trigger.get_next_fire_time(at(0), at(0.5)) == at(300)
    # Late by a whole interval (APScheduler only asks once it is due): still the next point.
    assert trigger.get_next_fire_time(at(300), at(300)) == at(600)
    # A run from 300 s that ended at 1000 s: 600 and 900 are skipped, not made up.
    assert trigger.get_next_fire_time(at(300), at(1000)) == at(1200)
    times, previous = [], at(0)
    for _ in range(50):
        previous = trigger.get_next_fire_time(previous, previous)
        times.append(offset(previous))
    assert times == [300.0 * k for k in range(1, 51)]


def test_each_delay_is_within_the_jitter_drawn_from_its_grid_point():
    # A fraction of 0.5 of a 300 s interval, as the config allows at most: 150 s.
    trigger = GridTrigger(300, START, jitter=150, rng=random.Random(22))
    delays, previous = [], at(0)
    for k in range(1, 201):
        previous = trigger.get_next_fire_time(previous, previous)
        delays.append(offset(previous) - 300 * k)  # from the k-th grid point: no drift
    assert all(0 <= delay <= 150 for delay in delays)
    assert len(set(delays)) > 100  # random, not one delay for all
    assert min(delays) < 15 and max(delays) > 135  # spread over the whole range
    # The same seed, the same delays: the draws come from the rng given, nothing else.
    again = GridTrigger(300, START, jitter=150, rng=random.Random(22))
    assert again.get_next_fire_time(at(0), at(0)) == at(300 + delays[0])


@pytest.mark.parametrize("jitter", [-1, 300, 301])
def test_a_jitter_of_an_interval_or_more_is_refused(jitter):
    with pytest.raises(ValueError, match="jitter"):
        GridTrigger(300, START, jitter=jitter)


# --- the scheduler, on a fake clock ------------------------------------------------------------


class FakeClock:
    """The wall and steady clocks of a Schedule under test, moved only by ``advance()``.

    APScheduler 3 decides what is due from ``datetime.now(tz)`` read in
    ``apscheduler.schedulers.base`` (its job processing and reschedule_job); ``install()``
    gives that module a ``datetime`` whose now() is this clock. Its waits stay real but are
    computed from this clock, so nothing becomes due by itself: each step advances the clock
    and calls the public ``wakeup()``, and the scheduler's events say what it did."""

    def __init__(self, start: datetime = START):
        self.wall = start
        self.steady = 1000.0

    def now(self) -> datetime:
        return self.wall

    def read_steady(self) -> float:
        return self.steady

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.steady += seconds

    def install(self, monkeypatch) -> None:
        clock = self

        class Datetime(datetime):
            @classmethod
            def now(cls, tz=None):
                return clock.wall.astimezone(tz)

        monkeypatch.setattr(apscheduler.schedulers.base, "datetime", Datetime)


class Driven:
    """A Schedule on a FakeClock, with what its scheduler did as a queue of events."""

    def __init__(self, monkeypatch, **jitter_rng):
        self.clock = FakeClock()
        self.clock.install(monkeypatch)
        self.schedule = Schedule(now=self.clock.now, steady=self.clock.read_steady, **jitter_rng)
        self.events: queue.Queue = queue.Queue()
        self.unread: list = []
        self.schedule.scheduler.add_listener(
            self.events.put, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_EXECUTED
        )

    def next_event(self, code: int):
        """The oldest event of that kind not yet taken: a run's end (from its thread) can be
        heard before its submission (from the scheduler's)."""
        for event in self.unread:
            if event.code == code:
                self.unread.remove(event)
                return event
        while True:
            event = self.events.get(timeout=10)
            if event.code == code:
                return event
            self.unread.append(event)

    def step(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.schedule.scheduler.wakeup()

    def next_run(self, name: str) -> datetime:
        return self.schedule.scheduler.get_job(name).next_run_time


@pytest.fixture
def driven(monkeypatch):
    made: list[Driven] = []

    def make(**kwargs) -> Driven:
        made.append(Driven(monkeypatch, **kwargs))
        return made[-1]

    yield make
    for each in made:
        each.schedule.stop(timeout=5)


def test_the_first_run_is_at_once_and_the_next_ones_on_the_grid(driven):
    run = driven()
    runs: list[datetime] = []
    run.schedule.every("tick", 60, lambda: runs.append(run.clock.now()))
    run.schedule.start()
    assert run.next_event(EVENT_JOB_SUBMITTED).scheduled_run_times == [START]
    run.next_event(EVENT_JOB_EXECUTED)
    assert run.next_run("tick") == at(60)
    for _ in range(3):
        run.step(60)
        run.next_event(EVENT_JOB_EXECUTED)
    assert [offset(moment) for moment in runs] == [0, 60, 120, 180]
    assert run.next_run("tick") == at(240)


def test_a_slow_run_is_never_doubled_and_the_times_it_covered_are_skipped(driven):
    run = driven()
    release, started = threading.Event(), threading.Semaphore(0)
    running = most = 0
    lock = threading.Lock()

    def slow() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        started.release()
        release.wait(10)
        with lock:
            running -= 1

    run.schedule.every("tick", 60, slow)
    run.schedule.start()
    assert started.acquire(timeout=10)
    assert run.next_event(EVENT_JOB_SUBMITTED).scheduled_run_times == [START]
    for k in (1, 2, 3):  # three grid points pass while the first run goes on
        run.step(60)
        assert run.next_event(EVENT_JOB_MAX_INSTANCES).scheduled_run_times == [at(60 * k)]
    release.set()
    run.next_event(EVENT_JOB_EXECUTED)
    run.step(60)
    assert run.next_event(EVENT_JOB_SUBMITTED).scheduled_run_times == [at(240)]
    run.next_event(EVENT_JOB_EXECUTED)
    assert most == 1 and running == 0
    assert run.next_run("tick") == at(300)


def test_missed_runs_are_coalesced_into_one(driven):
    run = driven()
    runs = []
    run.schedule.every("tick", 60, lambda: runs.append(run.clock.now()))
    run.schedule.start()
    run.next_event(EVENT_JOB_EXECUTED)
    # The scheduler could not run for five intervals (a VM paused, the clock stepped forward).
    run.step(5 * 60 + 10)
    submitted = run.next_event(EVENT_JOB_SUBMITTED)
    assert len(submitted.scheduled_run_times) == 1  # one run, not a burst of five
    run.next_event(EVENT_JOB_EXECUTED)
    assert len(runs) == 2  # run at once, however late (misfire_grace_time=None)
    assert run.next_run("tick") == at(360)
    job = run.schedule.scheduler.get_job("tick")
    assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, None)


def test_jittered_runs_stay_on_the_grid_within_their_jitter(driven):
    run = driven(rng=random.Random(7))
    runs: list[float] = []
    run.schedule.every("tick", 60, lambda: runs.append(offset(run.clock.now())), jitter=30)
    run.schedule.start()
    run.next_event(EVENT_JOB_EXECUTED)
    for _ in range(20):
        due = run.next_run("tick")
        run.step((due - run.clock.now()).total_seconds())
        run.next_event(EVENT_JOB_EXECUTED)
    delays = [moment - 60 * k for k, moment in enumerate(runs)]
    assert delays[0] == 0 and all(0 <= delay <= 30 for delay in delays[1:])
    assert len({round(delay, 6) for delay in delays[1:]}) > 10


def test_a_run_that_fails_is_logged_and_the_job_goes_on(driven, caplog):
    run = driven()
    runs = []

    def job() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("the engine went away")

    run.schedule.every("failing", 60, job)
    with caplog.at_level(logging.ERROR, logger="agent.schedule"):
        run.schedule.start()
        run.next_event(EVENT_JOB_EXECUTED)
        run.step(60)
        run.next_event(EVENT_JOB_EXECUTED)
    assert len(runs) == 2
    assert "failing failed" in caplog.text and "the engine went away" in caplog.text


def test_run_now_runs_a_job_at_once_and_then_on_its_grid(driven):
    run = driven()
    runs = []
    run.schedule.every("delivery", 5, lambda: runs.append(offset(run.clock.now())))
    run.schedule.start()
    run.next_event(EVENT_JOB_EXECUTED)
    run.clock.advance(2)
    run.schedule.run_now("delivery")
    run.next_event(EVENT_JOB_EXECUTED)
    assert runs == [0, 2] and run.next_run("delivery") == at(5)


# --- a stop in bounded time ----------------------------------------------------------------------


def test_stop_waits_for_a_run_in_progress_only_so_long(driven):
    run = driven()
    release, started = threading.Event(), threading.Event()
    run.schedule.every("stuck", 60, lambda: (started.set(), release.wait(30)))
    run.schedule.start()
    assert started.wait(10)
    assert run.schedule.stop(timeout=0.2) is False  # it still runs: the caller exits anyway
    release.set()
    assert run.schedule.stop(timeout=10) is True


def test_after_stop_nothing_starts(driven):
    run = driven()
    runs = []
    run.schedule.every("tick", 60, lambda: runs.append(1))
    run.schedule.start()
    run.next_event(EVENT_JOB_EXECUTED)
    assert run.schedule.stop(timeout=5) is True
    run.clock.advance(600)
    run.schedule.run_now("tick")  # a heartbeat finishing during the stop asks for a delivery
    assert runs == [1] and not run.schedule.scheduler.running


# --- a wall clock stepped ------------------------------------------------------------------------


@pytest.mark.parametrize("step", [-3600, +3600])
def test_a_stepped_wall_clock_keeps_the_grid_of_the_steady_clock(driven, step):
    run = driven()
    runs = []
    run.schedule.every("tick", 60, lambda: runs.append(run.clock.read_steady()))
    run.schedule.start()
    run.next_event(EVENT_JOB_EXECUTED)
    run.clock.advance(20)
    run.clock.wall += timedelta(seconds=step)  # the owner sets the clock; steady time goes on
    due = run.schedule.follow_wall_clock()
    assert due == {"tick": 40.0}
    assert run.next_run("tick") == run.clock.now() + timedelta(seconds=40)
    run.step(40)
    run.next_event(EVENT_JOB_EXECUTED)
    assert [steady - runs[0] for steady in runs] == [0, 60]


def test_a_tick_due_while_the_step_went_unnoticed_runs_at_once(driven):
    run = driven()
    runs = []
    run.schedule.every("tick", 60, lambda: runs.append(run.clock.read_steady()))
    run.schedule.start()
    run.next_event(EVENT_JOB_EXECUTED)
    run.clock.wall -= timedelta(hours=1)
    run.step(63)  # the tick at 60 s (steady) looked an hour away to APScheduler
    assert len(runs) == 1
    assert run.schedule.follow_wall_clock() == {"tick": 0.0}
    run.next_event(EVENT_JOB_EXECUTED)
    assert len(runs) == 2
    # Back on the steady grid: the next at 120 s.
    assert run.next_run("tick") == run.clock.now() + timedelta(seconds=57)
