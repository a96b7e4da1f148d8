"""The daemon's schedule: the first run at once, never two runs of a job at a time, a failing
run logged and the job kept, and a stop that lets the run in progress finish."""

import logging
import threading

from agent.schedule import Every
from tests.polling import wait_for


def test_a_long_run_is_never_overlapped_and_stop_lets_it_finish():
    running, most, runs = 0, 0, 0
    release, lock = threading.Event(), threading.Lock()

    def job() -> None:
        nonlocal running, most, runs
        with lock:
            running += 1
            most = max(most, running)
            runs += 1
        release.wait(10)  # many intervals of 10 ms pass during the first run
        with lock:
            running -= 1

    every = Every("test", 0.01, job)
    every.start()
    wait_for(lambda: runs == 1, "no first run at once")
    release.set()
    wait_for(lambda: runs >= 3, "no runs after the long one")
    every.stop()
    after = runs
    assert most == 1 and running == 0
    assert runs == after  # nothing started after stop() returned


def test_a_run_that_fails_is_logged_and_the_job_goes_on(caplog):
    runs = []

    def job() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("the engine went away")

    every = Every("failing", 0.01, job)
    with caplog.at_level(logging.ERROR, logger="agent.schedule"):
        every.start()
        wait_for(lambda: len(runs) >= 2, "the job stopped after a failure")
        every.stop()
    assert "failing failed" in caplog.text and "the engine went away" in caplog.text
