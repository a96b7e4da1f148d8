"""Collector test helpers shared by the route suites."""

import pytest

from collector.models import Payment, Project
from tests.factories import deployment


def rows(dbconn) -> tuple:
    """The deployment and payment tables, in a form to compare before and after."""
    return (
        sorted((p.name, p.status, p.url) for p in Project.select()),
        sorted((p.name, p.amount) for p in Payment.select()),
    )


@pytest.fixture
def unchanged(dbconn, client):
    """Seed one deployment, then assert after the test that nothing changed."""
    assert client.post("/deployments", json=deployment(name="seed")).status_code == 201
    before = rows(dbconn)
    yield
    assert rows(dbconn) == before
