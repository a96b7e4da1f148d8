"""A worker's state: the one status model (issue 25). Every reader says it the same way: the
worker routes (``state``, and the dialect's HEALTHY/WARNING/DEAD/UNKNOWN derived from it),
the dashboard, ``tassium-collector workers`` and ``/metrics``.

- ``up``: its last heartbeat is within the gap and did not say Docker is unavailable, and a
  sign of life (a ping or a heartbeat) came within 3 ping intervals. Paid.
- ``late``: its last heartbeat is within the gap, but nothing for 3 ping intervals. Its
  silence is paid only if a heartbeat comes before the gap runs out.
- ``degraded``: heard from within the gap, but its last heartbeat said Docker is
  unavailable. Counted as downtime: not paid.
- ``down``: its last heartbeat is older than the gap; its window has closed. Not paid.
- ``never_seen``: known (enrolled) but never sent a heartbeat. Not paid.

In that order of precedence: a silent worker is ``late`` whatever its last heartbeat said of
Docker. Written once as a function of one worker (``state_of``) and once as query conditions
(``where``, ``counted``), which the tests hold equal."""

from datetime import datetime, timedelta
from typing import Literal

from peewee import Case, Expression, fn

from collector.store.models import Worker
from collector.uptime.pings import DEAD, HEALTHY, UNKNOWN, WARNING

UP, LATE, DEGRADED, DOWN, NEVER_SEEN = "up", "late", "degraded", "down", "never_seen"
STATES = (UP, LATE, DEGRADED, DOWN, NEVER_SEEN)
State = Literal["up", "late", "degraded", "down", "never_seen"]
# Whether each state's time is being paid: up, and late until the gap runs out.
PAID = {UP: True, LATE: True, DEGRADED: False, DOWN: False, NEVER_SEEN: False}
# In plain words, for the dashboard's legend and the CLI.
MEANING = {
    UP: "heartbeats counting, Docker available",
    LATE: "silent for 3 ping intervals: paid only if a heartbeat comes within the gap",
    DEGRADED: "heard from, but Docker is unavailable: counted as downtime, not paid",
    DOWN: "no heartbeat within the gap: not paid",
    NEVER_SEEN: "never sent a heartbeat: not paid",
}
# The original worker client's labels (the /api/v1 dialect), from the state.
DIALECT = {UP: HEALTHY, LATE: WARNING, DEGRADED: WARNING, DOWN: DEAD, NEVER_SEEN: UNKNOWN}


def state_of(
    worker: Worker,
    last_sign: datetime | None,
    now: datetime,
    *,
    gap: int,
    ping_interval: int,
) -> str:
    """The worker's state (``STATES``), given its last sign of life (a ping, this process's
    pending one included, or a heartbeat's arrival: collector/uptime/workers.py's
    ``last_ping``)."""
    last = worker.last_heartbeat_at
    if last is None:
        return NEVER_SEEN
    if now - last > timedelta(seconds=gap):
        return DOWN
    if last_sign is None or now - last_sign >= timedelta(seconds=3 * ping_interval):
        return LATE
    if worker.docker_available is False:
        return DEGRADED
    return UP


def where(state: str, now: datetime, *, gap: int, ping_interval: int) -> Expression:
    """``state_of`` as a query condition on the workers table (signs of life as written:
    a ping still pending in a process counts once written, a few seconds later)."""
    return _conditions(now, gap, ping_interval)[state]


def counted(now: datetime, *, gap: int, ping_interval: int) -> dict[str, int]:
    """How many workers are in each state, in one query."""
    conditions = _conditions(now, gap, ping_interval)
    state = Case(None, [(conditions[s], s) for s in STATES[:-1]], NEVER_SEEN)
    rows = Worker.select(state.alias("state"), fn.COUNT(Worker.wallet_address)).group_by(state)
    found = dict.fromkeys(STATES, 0)
    for name, count in rows.tuples():
        found[name] = count
    return found


def listed(now: datetime, *, gap: int, ping_interval: int, limit: int) -> list[tuple[str, str]]:
    """At most ``limit`` workers with their state: those not paid first (what an alert is
    about), then by wallet."""
    conditions = _conditions(now, gap, ping_interval)
    state = Case(None, [(conditions[s], s) for s in STATES[:-1]], NEVER_SEEN)
    unpaid = Case(None, [(conditions[s], 1) for s in STATES if not PAID[s]], 0)
    rows = (
        Worker.select(Worker.wallet_address, state)
        .order_by(unpaid.desc(), Worker.wallet_address)
        .limit(limit)
    )
    return list(rows.tuples())


def _conditions(now: datetime, gap: int, ping_interval: int) -> dict[str, Expression]:
    # Each condition is true or false, never NULL (a NULL compared is false here), so that
    # every worker is in exactly one state: NOT of a NULL would leave it in none.
    def after(field, moment: datetime) -> Expression:
        return field.is_null(False) & (field > moment)

    since = now - timedelta(seconds=3 * ping_interval)
    live = after(Worker.last_ping_at, since) | after(Worker.last_seen_at, since)
    silent = ~live
    heard = Worker.last_heartbeat_at.is_null(False)
    within = heard & (Worker.last_heartbeat_at >= now - timedelta(seconds=gap))
    docker_down = Worker.docker_available.is_null(False) & (Worker.docker_available == False)  # noqa: E712 - SQL
    return {
        UP: within & live & ~docker_down,
        LATE: within & silent,
        DEGRADED: within & live & docker_down,
        DOWN: heard & (Worker.last_heartbeat_at < now - timedelta(seconds=gap)),
        NEVER_SEEN: Worker.last_heartbeat_at.is_null(),
    }
