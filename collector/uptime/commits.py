"""Group commit: heartbeats arriving together share one transaction.

A heartbeat alone is a short transaction whose commit (on PostgreSQL a flush of the WAL to
disk) and round trips cost more than its statements. Here the first heartbeat to arrive
leads a group: it waits, at most ``wait`` seconds, for the other heartbeat requests the
process is serving at that moment to join (half a millisecond when none does: a quiet
collector answers almost at once), applies the whole group in one transaction, and hands
every member its own result only after the commit, so a heartbeat acknowledged is a heartbeat
committed. While a group is being applied the next one gathers; its first member then
leads it. A failure of the transaction is every member's failure, and none is
acknowledged.

The lock and conditions are the threading module's, which gunicorn's gevent workers patch
into their cooperative versions: a request waiting here is a greenlet, and the leader's
database calls block the process as they always have (collector/serve.py).
"""

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

# Heartbeats in one transaction at most: each holds its worker's row lock until the commit.
MAX_GROUP = 200
# How long the leader waits for the next member before it stops waiting.
STEP = 0.0005


class _Member:
    __slots__ = ("item", "outcome", "done", "leads", "woken")

    def __init__(self, item: Any):
        self.item = item
        self.outcome: Any = None
        self.done = False
        self.leads = False
        self.woken = threading.Event()  # done, or leads


class GroupCommit:
    """Applies items in groups with ``apply(items) -> results`` (one result per item, in
    order, an Exception for one refused); ``submit`` returns one item's result, or raises
    its exception."""

    def __init__(
        self,
        apply: Callable[[list], list],
        *,
        wait: float,
        max_group: int = MAX_GROUP,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.apply = apply
        self.wait = wait
        # Under gevent, requests reach submit one at a time, each between two turns of the
        # event loop, so they cannot be counted on the way: the leader gives the loop short
        # steps, and stops waiting at the first step in which nobody joined.
        self.step = min(wait, STEP)
        self.max_group = max_group
        self.clock = clock
        self._lock = threading.Lock()
        self._joined = threading.Condition(self._lock)  # the leader waits on it
        self._queue: list[_Member] = []
        self._leading = False
        self._arriving = 0
        self.groups = 0  # applied so far, for tests and benchmarks
        self.applied = 0

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Around a request that may submit: the leader waits for requests inside this
        block to submit (or to leave without, refused)."""
        with self._lock:
            self._arriving += 1
        try:
            yield
        finally:
            with self._lock:
                self._arriving -= 1
                self._joined.notify()

    def submit(self, item: Any) -> Any:
        [outcome] = self.submit_many([item])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def submit_many(self, items: list) -> list:
        """Several items, in order, in as few groups as the limit allows (a batch of
        heartbeats replayed from an agent's spool): each one's result or exception."""
        members = [_Member(item) for item in items]
        with self._lock:
            self._queue.extend(members)
            self._joined.notify()
            if members and not self._leading:
                self._leading = members[0].leads = True
                members[0].woken.set()
        for member in members:
            member.woken.wait()
            if not member.done:  # handed the lead: the group it leads holds it
                self._lead()
        return [member.outcome for member in members]

    def _lead(self) -> None:
        """Gather, apply and answer one group, then hand the lead to the first member
        waiting, if any."""
        group: list[_Member] = []
        try:
            with self._lock:
                deadline = self.clock() + self.wait
                while len(self._queue) < self.max_group:
                    remaining = deadline - self.clock()
                    if remaining <= 0:
                        break
                    queued = len(self._queue)
                    on_the_way = self._arriving > queued  # (with threads) parsing, verifying
                    self._joined.wait(remaining if on_the_way else min(remaining, self.step))
                    if len(self._queue) == queued and not on_the_way:
                        break  # a step passed and nobody joined: the rush is over
                group = self._queue[: self.max_group]
                del self._queue[: self.max_group]
            try:
                outcomes = self.apply([m.item for m in group])
            except Exception as exc:  # every member's failure: each request answers it
                outcomes = [exc] * len(group)
            with self._lock:
                for member, outcome in zip(group, outcomes, strict=True):
                    member.outcome, member.done = outcome, True
                self.groups += 1
                self.applied += len(group)
        finally:
            with self._lock:
                for member in group:
                    if not member.done:  # the leader itself was stopped (killed, timed out)
                        member.outcome = RuntimeError("the group's transaction was abandoned")
                        member.done = True
                    member.woken.set()
                if self._queue:
                    self._queue[0].leads = True
                    self._queue[0].woken.set()
                else:
                    self._leading = False
