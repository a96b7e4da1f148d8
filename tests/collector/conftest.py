"""Collector test helpers shared by the route suites."""

from datetime import UTC, datetime, timedelta

import pytest

from collector.store.models import Payment, Project, UptimeRecord, Worker, WorkerMetric
from tests.chromium import launched
from tests.factories import FakeWorker, deployment, new_wallet

OCT = datetime(2026, 10, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def rows(dbconn) -> tuple:
    """The deployment and payment tables, in a form to compare before and after."""
    return (
        sorted((p.name, p.status, p.url) for p in Project.select()),
        sorted((p.name, p.amount) for p in Payment.select()),
    )


@pytest.fixture
def worker(client, history) -> FakeWorker:
    """A worker enrolled through the app, known to ``history``."""
    enrolled = FakeWorker()
    assert enrolled.enroll(client).status_code == 201
    history.known(enrolled.wallet)
    return enrolled


@pytest.fixture
def unchanged(dbconn, operator):
    """Seed one deployment, then assert after the test that nothing changed."""
    assert operator.post("/deployments", json=deployment(name="seed")).status_code == 201
    before = rows(dbconn)
    yield
    assert rows(dbconn) == before


@pytest.fixture
def october(dbconn):
    """Three workers of October: credits 1.5, 3 and 0 (the last was up, but earned nothing),
    uptime 1 h, 2 h and 3 h; and one that earned only in November."""
    wallets = sorted(new_wallet() for _ in range(3))
    for wallet, millis, hours in zip(wallets, (1500, 3000, 0), (1, 2, 3), strict=True):
        Worker.create(wallet_address=wallet, created_at=OCT, last_heartbeat_at=OCT + 3 * HOUR)
        UptimeRecord.create(worker=wallet, time_from=OCT, time_to=OCT + hours * HOUR)
        WorkerMetric.create(
            worker=wallet, timestamp=OCT + HOUR, container_count=1, credits_millis=millis
        )
    later = new_wallet()
    Worker.create(wallet_address=later, created_at=OCT)
    WorkerMetric.create(
        worker=later,
        timestamp=datetime(2026, 11, 1, tzinfo=UTC),
        container_count=1,
        credits_millis=9000,
    )
    return wallets


@pytest.fixture
def browser():
    """Headless Chromium, for the pages' browser tests (tests/chromium.py)."""
    with launched() as chromium:
        yield chromium
