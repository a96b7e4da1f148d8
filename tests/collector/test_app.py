"""The application: its health check, and serving over real HTTP."""

import httpx

from protocol.times import parse_timestamp, utcnow
from tests.factories import deployment


def test_healthz_reports_the_schema_and_what_an_agent_needs_to_judge_its_clock(client):
    before = utcnow()
    health = client.get("/healthz").json
    assert before <= parse_timestamp(health.pop("serverTime")) <= utcnow()
    assert health == {"status": "ok", "schemaVersion": 2, "maxSkew": 120, "maxBackfill": 86400}


def test_the_served_app_answers_over_real_http(serve_collector):
    served = serve_collector(processes=1)
    created = httpx.post(served.url + "/deployments", json=deployment(), timeout=10)
    assert created.status_code == 201
    assert httpx.get(served.url + "/deployments/web-1", timeout=10).json()["name"] == "web-1"
    big = httpx.post(served.url + "/deployments", content=b"x" * 300_000, timeout=10)
    assert big.status_code == 413
