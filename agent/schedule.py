"""A job run every so many seconds on a thread of its own, as the daemon needs it: the first
run at once, then on a fixed grid (start + k × interval), each run delayed by a random part
of ``jitter`` so that a fleet does not beat in lockstep; a run that outlasts the interval is
never overlapped, and the grid points it covered are skipped, not made up.

It waits on the steady clock: a wall clock stepped back an hour delays nothing. APScheduler
did this (by the wall clock, which the daemon had to correct) for about 5 MB of resident
memory with asyncio, tzlocal and its plugin registry."""

import logging
import math
import random
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Every:
    def __init__(
        self,
        name: str,
        interval: float,
        job: Callable[[], object],
        jitter: float = 0.0,
        rng: random.Random | None = None,
    ):
        self.name = name
        self.interval = interval
        self.job = job
        self.jitter = jitter
        self.rng = rng or random.Random()  # noqa: S311 - spreading a fleet, not a secret
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        start = time.monotonic()
        slot = 0
        while not self._stop.is_set():
            try:
                self.job()
            except Exception:
                log.exception("%s failed; it runs again at its next time", self.name)
            # The next grid point still ahead: those a long run covered are skipped.
            slot = max(slot + 1, math.ceil((time.monotonic() - start) / self.interval))
            due = start + slot * self.interval + self.rng.uniform(0, self.jitter)
            self._stop.wait(max(0.0, due - time.monotonic()))

    def stop(self) -> None:
        """Let a run in progress finish, and start no other."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
