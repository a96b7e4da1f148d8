"""collector/store/db.py: the PostgreSQL pool hands out a connection given back moments ago
without a round trip, checks one idle for longer, and a request on a connection the server
dropped is a 503 after which the next request finds a fresh one."""

from urllib.parse import urlsplit

import pytest

from collector.store.db import PostgresPool

pytestmark = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)]
)


def drop_connections(postgres, database_url: str) -> None:
    """What a restarted server does to every connection the collector holds."""
    name = urlsplit(database_url).path.lstrip("/")
    sql = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s'"
    postgres.admin(sql % name + " AND pid <> pg_backend_pid()")


def test_a_connection_given_back_moments_ago_is_not_checked(client, postgres, database_url):
    assert client.get("/workers").status_code == 200
    drop_connections(postgres, database_url)

    # Not checked, so the dropped connection fails this request, and every pooled one goes.
    assert client.get("/workers").status_code == 503
    assert client.get("/workers").status_code == 200


def test_a_connection_idle_for_a_while_is_checked_first(
    client, postgres, database_url, monkeypatch
):
    monkeypatch.setattr(PostgresPool, "IDLE_CHECK", 0.0)
    assert client.get("/workers").status_code == 200
    drop_connections(postgres, database_url)

    assert client.get("/workers").status_code == 200
