"""The one status model (collector/uptime/states.py): each worker in exactly one state, the
same from the function of one worker as from the query conditions that count a fleet, on
SQLite and PostgreSQL; the dialect's labels and the pay derived from it."""

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from collector.store.models import Worker
from collector.uptime import states
from collector.uptime.states import DEGRADED, DOWN, LATE, NEVER_SEEN, UP, state_of

NOW = datetime(2026, 11, 24, 21, 0, tzinfo=UTC)
GAP, PING = 1800, 30
TIMING = {"gap": GAP, "ping_interval": PING}


def ago(seconds: float | None) -> datetime | None:
    return None if seconds is None else NOW - timedelta(seconds=seconds)


def worker(heartbeat: float | None, docker: bool | None = True, **fields) -> Worker:
    return Worker(
        wallet_address=f"0x{len(fields):040x}",
        last_heartbeat_at=ago(heartbeat),
        docker_available=docker,
        **fields,
    )


@pytest.mark.parametrize(
    ("heartbeat", "docker", "sign", "expected"),
    [
        (None, None, None, NEVER_SEEN),
        (None, None, 5, NEVER_SEEN),  # pings alone are no heartbeat
        (60, True, 60, UP),
        (60, None, 60, UP),  # an agent that does not say is taken as serving
        (GAP, True, 10, UP),  # the gap's last instant still counts
        (GAP + 0.001, True, 10, DOWN),
        (60, True, 3 * PING - 0.001, UP),
        (60, True, 3 * PING, LATE),
        (60, True, None, LATE),
        (60, False, 10, DEGRADED),
        (60, False, 3 * PING, LATE),  # silence first: its Docker news is old
        (GAP + 60, False, 10, DOWN),
    ],
)
def test_the_state_of_one_worker(heartbeat, docker, sign, expected):
    assert state_of(worker(heartbeat, docker), ago(sign), NOW, **TIMING) == expected


def test_paid_and_the_dialect_follow_the_state():
    assert [s for s in states.STATES if states.PAID[s]] == [UP, LATE]
    assert states.DIALECT == {
        UP: "HEALTHY",
        LATE: "WARNING",
        DEGRADED: "WARNING",
        DOWN: "DEAD",
        NEVER_SEEN: "UNKNOWN",
    }
    assert set(states.MEANING) == set(states.STATES)


# Every combination the conditions must tell apart, boundaries included.
HEARTBEATS = (None, 60, GAP, GAP + 1)
DOCKER = (None, True, False)
SIGNS = (None, 10, 3 * PING - 1, 3 * PING, 3 * PING + 1)


@pytest.fixture
def fleet(dbconn) -> dict[str, str]:
    """A worker for every combination, stored; its wallet -> its state by ``state_of``."""
    expected, rows = {}, []
    for n, (heartbeat, docker, ping, seen) in enumerate(
        itertools.product(HEARTBEATS, DOCKER, SIGNS, SIGNS)
    ):
        row = Worker(
            wallet_address=f"0x{n:040x}",
            last_heartbeat_at=ago(heartbeat),
            docker_available=docker,
            last_ping_at=ago(ping),
            last_seen_at=ago(seen),
        )
        rows.append(row.__data__)
        signs = [t for t in (row.last_ping_at, row.last_seen_at) if t is not None]
        expected[row.wallet_address] = state_of(row, max(signs, default=None), NOW, **TIMING)
    Worker.insert_many(rows).execute()
    return expected


def test_the_query_conditions_agree_with_the_function(fleet):
    for state in states.STATES:
        found = {
            w.wallet_address for w in Worker.select().where(states.where(state, NOW, **TIMING))
        }
        assert found == {wallet for wallet, s in fleet.items() if s == state}, state
    assert states.counted(NOW, **TIMING) == {s: Counter(fleet.values())[s] for s in states.STATES}


def test_listed_puts_the_unpaid_first_then_orders_by_wallet(fleet):
    unpaid = sorted(w for w, s in fleet.items() if not states.PAID[s])
    listed = states.listed(NOW, limit=len(unpaid) + 3, **TIMING)
    assert [w for w, _ in listed[: len(unpaid)]] == unpaid
    assert all(states.PAID[s] for _, s in listed[len(unpaid) :])
    assert all(fleet[w] == s for w, s in listed)
    assert len(states.listed(NOW, limit=5, **TIMING)) == 5
