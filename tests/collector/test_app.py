"""The application: its health check, and serving over real HTTP."""

import httpx

from collector.store.migrations import LATEST_VERSION
from protocol.times import utcnow
from tests.collector.uptime.test_heartbeats import assert_server_time
from tests.factories import deployment


def test_healthz_reports_the_schema_and_what_an_agent_needs_to_judge_its_clock(client):
    before = utcnow()
    health = client.get("/healthz").json
    assert_server_time(health, before)
    del health["serverTime"]
    assert health == {
        "status": "ok",
        "schemaVersion": LATEST_VERSION,
        "maxSkew": 120,
        "maxBackfill": 86400,
    }


def test_healthz_tells_the_time_while_the_database_is_down(make_app, tmp_path):
    # SQLite's "unable to open database file": the directory is gone.
    database_url = f"sqlite:///{tmp_path / 'gone' / 'c.db'}"
    client = make_app(database_url=database_url, max_skew=60, max_backfill=3600).test_client()
    before = utcnow()
    response = client.get("/healthz")
    assert response.status_code == 503
    health = response.json
    assert_server_time(health, before)
    del health["serverTime"]
    assert health == {
        "status": "error",
        "error": "database unavailable",
        "maxSkew": 60,
        "maxBackfill": 3600,
    }


def test_the_served_app_answers_over_real_http(serve_collector):
    served = serve_collector(processes=1)
    created = httpx.post(
        served.url + "/deployments", json=deployment(), headers=served.operator, timeout=10
    )
    assert created.status_code == 201
    assert httpx.get(served.url + "/deployments/web-1", timeout=10).json()["name"] == "web-1"
    big = httpx.post(served.url + "/deployments", content=b"x" * 300_000, timeout=10)
    assert big.status_code == 413
