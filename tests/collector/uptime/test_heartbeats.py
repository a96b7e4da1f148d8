"""POST /heartbeat: signatures, the clock rules, validation, and that a rejected heartbeat
writes nothing."""

import base64
import json
import os
import re
from datetime import datetime, timedelta

import pytest
from werkzeug.exceptions import InternalServerError

from collector.store.models import OpenWindow, UptimeRecord, Worker, WorkerContainer, WorkerMetric
from collector.uptime import heartbeats
from collector.web import telemetry
from protocol.heartbeat import SIGNATURE_HEADER
from protocol.times import format_timestamp, parse_timestamp, utcnow
from tests.conftest import operator_client
from tests.factories import FakeWorker, machine, minutes_ago, new_wallet


def snapshot(dbconn) -> tuple:
    """Everything a heartbeat may change."""
    return (
        sorted((w.wallet_address, w.last_heartbeat_at, w.hostname) for w in Worker.select()),
        sorted((w.worker_address, w.start_time, w.end_time) for w in OpenWindow.select()),
        sorted((r.worker_address, r.time_from, r.time_to) for r in UptimeRecord.select()),
        sorted((c.worker_address, c.container_name) for c in WorkerContainer.select()),
        sorted((m.worker_address, m.timestamp) for m in WorkerMetric.select()),
        sorted((w.wallet_address, w.credits_millis, w.cpu_cores) for w in Worker.select()),
    )


@pytest.fixture
def accepted(worker, client) -> tuple[bytes, dict]:
    """The raw body and headers of a heartbeat the collector accepted ten minutes ago."""
    body, headers = worker.signed(worker.heartbeat_body(minutes_ago(10)))
    assert client.post("/heartbeat", data=body, headers=headers).status_code == 200
    return body, headers


@pytest.fixture
def unchanged(dbconn, accepted):
    """Assert, after the test's request, that the database is as it was before it."""
    before = snapshot(dbconn)
    yield
    assert snapshot(dbconn) == before


def post(client, body: bytes, signature: str | None):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    return client.post("/heartbeat", data=body, headers=headers)


def test_it_accepts_a_signed_heartbeat_and_extends_the_window(client, worker):
    first = worker.beat(client, minutes_ago(2))
    second = worker.beat(client, minutes_ago(1))
    assert (first.status_code, first.json["action"]) == (200, "opened")
    assert (second.status_code, second.json["action"]) == (200, "extended")
    shown = client.get(f"/workers/{worker.wallet}").json
    assert shown["lastHeartbeat"] == second.json["openWindow"]["endTime"]
    assert shown["containers"][0]["port"] == "0.0.0.0:8080->80/tcp"


def test_a_heartbeat_signed_by_another_workers_key_is_refused(client, worker, dbconn):
    other = FakeWorker()
    assert other.enroll(client).status_code == 201
    before = snapshot(dbconn)
    body = json.dumps(worker.heartbeat_body()).encode()
    _, headers = other.signed(body)
    assert post(client, body, headers[SIGNATURE_HEADER]).status_code == 401
    assert snapshot(dbconn) == before


@pytest.mark.usefixtures("unchanged")
class TestRejectedSignatures:
    def test_a_forged_signature_is_refused(self, client, worker):
        body, _ = worker.signed(worker.heartbeat_body())
        forged = base64.b64encode(os.urandom(64)).decode()
        response = post(client, body, forged)
        assert response.status_code == 401
        assert "signature" in response.json["error"]

    def test_a_body_altered_after_signing_is_refused(self, client, worker):
        body, headers = worker.signed(worker.heartbeat_body())
        altered = body.replace(b'"web"', b'"evil"')
        assert altered != body
        assert post(client, altered, headers[SIGNATURE_HEADER]).status_code == 401

    def test_the_same_json_with_other_whitespace_is_refused(self, client, worker):
        document = worker.heartbeat_body()
        body, headers = worker.signed(json.dumps(document).encode())
        respaced = json.dumps(document, indent=2).encode()
        assert post(client, respaced, headers[SIGNATURE_HEADER]).status_code == 401

    def test_an_unsigned_heartbeat_is_refused(self, client, worker):
        response = post(client, json.dumps(worker.heartbeat_body()).encode(), None)
        assert response.status_code == 401
        assert SIGNATURE_HEADER in response.json["error"]

    def test_a_signature_that_is_not_base64_is_refused(self, client, worker):
        body = json.dumps(worker.heartbeat_body()).encode()
        assert post(client, body, "not base64!").status_code == 401

    def test_an_unenrolled_wallet_is_unknown(self, client):
        stranger = FakeWorker()
        response = stranger.beat(client)
        assert response.status_code == 404
        assert "not enrolled" in response.json["error"]

    def test_a_replayed_body_is_a_conflict(self, client, accepted):
        body, headers = accepted
        response = post(client, body, headers[SIGNATURE_HEADER])
        assert response.status_code == 409
        assert "duplicate" in response.json["error"]
        # Its time is counted already: the agent may forget it.
        assert response.json["stored"] is True
        assert response.json["lastAccepted"] == json.loads(body)["timestamp"]

    def test_an_older_heartbeat_is_a_conflict_that_is_not_stored(self, client, worker):
        response = worker.beat(client, minutes_ago(11))
        assert response.status_code == 409
        assert "out of order" in response.json["error"]
        # Older than every window: it can never be counted, and the agent drops it.
        assert response.json["stored"] is False


def test_an_older_heartbeat_inside_the_open_window_is_stored_already(client, worker):
    for minutes in (10, 5):
        assert worker.beat(client, minutes_ago(minutes)).status_code == 200
    response = worker.beat(client, minutes_ago(7))
    assert (response.status_code, response.json["stored"]) == (409, True)


SERVER_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def assert_server_time(answer: dict, before: datetime) -> None:
    """``serverTime`` is the collector's clock when it answered, in milliseconds."""
    assert SERVER_TIME.fullmatch(answer["serverTime"]), answer
    told = parse_timestamp(answer["serverTime"])
    assert before - timedelta(milliseconds=1) < told <= utcnow()


def test_every_answer_carries_the_collectors_time(client, worker):
    before, ts = utcnow(), minutes_ago(1)
    huge = [{"containerName": f"c{i}", "port": "x" * 250} for i in range(1000)]
    answers = [
        worker.beat(client, ts),  # 200
        worker.beat(client, ts),  # 409
        worker.beat(client, utcnow() + timedelta(hours=1)),  # 422
        post(client, b"{", None),  # 400
        FakeWorker().beat(client),  # 404
        post(client, json.dumps(worker.heartbeat_body()).encode(), None),  # 401
        worker.beat(client, containers=huge),  # 413, refused before the route runs
    ]
    assert [a.status_code for a in answers] == [200, 409, 422, 400, 404, 401, 413]
    for answer in answers:
        assert_server_time(answer.json, before)


def test_a_database_outage_is_answered_with_the_collectors_time(make_app, tmp_path):
    # SQLite's "unable to open database file": the directory is gone.
    client = make_app(database_url=f"sqlite:///{tmp_path / 'gone' / 'c.db'}").test_client()
    before = utcnow()
    response = FakeWorker().beat(client)
    assert response.status_code == 503
    assert response.json["error"] == "database unavailable"
    assert int(response.headers["Retry-After"]) > 0
    assert_server_time(response.json, before)


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "when",
    [timedelta(minutes=3), -timedelta(hours=24, minutes=1)],
    ids=["beyond-skew", "beyond-backfill"],
)
def test_a_timestamp_outside_the_accepted_range_is_unprocessable(client, worker, when):
    response = worker.beat(client, utcnow() + when)
    assert response.status_code == 422
    assert "outside the accepted range" in response.json["error"]


def test_a_late_heartbeat_inside_the_backfill_is_accepted(client, worker):
    assert worker.beat(client, utcnow() - timedelta(hours=23)).status_code == 200
    assert worker.beat(client, utcnow() - timedelta(hours=22)).status_code == 200


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "change, message",
    [
        ({"timestamp": "2026-11-24T21:00:00"}, "RFC 3339"),
        ({"timestamp": None}, "RFC 3339"),
        ({"containers": "web"}, "containers must be a list"),
        ({"containers": [{"port": "80/tcp"}]}, "containerName"),
        ({"agent": {"dockerAvailable": "no"}}, "dockerAvailable"),
        ({"timestamp": "0001-01-01T00:00:00Z"}, "must lie from 1970"),
        ({"timestamp": "9999-12-31T23:59:59-01:00"}, "must lie from 1970"),
        ({"containers": [{"containerName": "web\ud800"}]}, "lone UTF-16 surrogate"),
        ({"agent": {"hostname": "a\u0000b"}}, "NUL"),
        ({"containers": [{"containerName": "web", "cpuPercent": -1}]}, "cpuPercent"),
        ({"containers": [{"containerName": "web", "memUsageMb": "12"}]}, "memUsageMb"),
        ({"system": {"cpuCores": 0}}, "cpuCores"),
        ({"system": {"cpuCores": 2.5}}, "cpuCores"),
        ({"system": {"cpuUsagePercent": 100.5}}, "cpuUsagePercent"),
        ({"system": {"ramTotalGb": True}}, "ramTotalGb"),
        ({"system": "big"}, "system must be an object"),
        ({"tailscaleIp": "100.64.0.300"}, "tailscaleIp"),
        ({"tailscaleIp": "fd7a:115c:a1e0::1"}, "tailscaleIp"),
        ({"hostname": 7}, "hostname"),
    ],
    ids=[
        "naive-time",
        "no-time",
        "containers-not-list",
        "no-name",
        "docker-not-bool",
        "first-instant",
        "past-the-last-instant",
        "lone-surrogate",
        "nul",
        "negative-cpu",
        "memory-as-text",
        "no-cores",
        "fractional-cores",
        "cpu-over-100",
        "ram-as-bool",
        "system-not-object",
        "bad-tailscale-ip",
        "tailscale-ipv6",
        "hostname-not-text",
    ],
)
def test_a_malformed_field_is_a_bad_request(client, worker, change, message):
    body = {**worker.heartbeat_body(minutes_ago(0.5)), **change}
    raw, headers = worker.signed(body)
    rejected = client.post("/heartbeat", data=raw, headers=headers)
    assert rejected.status_code == 400
    assert message in rejected.json["error"]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b"", b'{"walletAddress": "0x123", "timestamp": "2026-11-24T21:00:00Z"}'],
    ids=["broken-json", "array", "empty", "bad-wallet"],
)
def test_a_malformed_body_is_a_bad_request(client, body):
    response = post(client, body, "c2lnbmF0dXJl")
    assert response.status_code == 400
    assert response.json["error"]


@pytest.mark.usefixtures("unchanged")
def test_an_oversized_body_is_too_large(client, worker):
    containers = [{"containerName": f"c{i}", "port": "x" * 250} for i in range(1000)]
    response = worker.beat(client, containers=containers)
    assert response.status_code == 413


def test_the_container_list_is_replaced_and_docker_outage_shown(client, worker, dbconn):
    worker.beat(client, minutes_ago(3), containers=[{"containerName": "a"}, {"containerName": "b"}])
    worker.beat(client, minutes_ago(2), containers=[], agent={"dockerAvailable": False})
    shown = client.get(f"/workers/{worker.wallet}").json
    assert shown["containers"] == []
    assert shown["dockerAvailable"] is False


def test_with_signatures_off_the_plans_plain_heartbeat_creates_the_worker(make_app, dbconn):
    client = make_app(require_signatures=False).test_client()
    wallet = new_wallet()
    plain = {
        "walletAddress": wallet,
        "timestamp": format_timestamp(utcnow()),
        "containers": [{"containerName": "web", "port": "0.0.0.0:8080->80/tcp"}],
    }
    response = client.post("/heartbeat", json=plain)
    assert response.status_code == 200, response.json
    assert Worker.get_by_id(wallet).last_heartbeat_at is not None
    assert client.post("/heartbeat", json={**plain, "walletAddress": "0xnope"}).status_code == 400


def test_a_stellar_collector_takes_stellar_wallets_only(make_app, dbconn):
    client = make_app(wallet_format="stellar").test_client()
    stellar = FakeWorker.stellar()
    assert stellar.enroll(client).status_code == 201
    assert stellar.beat(client).status_code == 200
    evm = FakeWorker()
    response = evm.enroll(client)
    assert response.status_code == 400
    assert "Stellar" in response.json["error"]


def test_a_first_heartbeat_opens_a_window_and_stores_the_containers(client):
    worker = FakeWorker()
    assert worker.enroll(client).status_code == 201
    response = worker.beat(client)
    assert response.status_code == 200, response.json
    assert response.json["action"] == "opened"
    assert (
        client.get(f"/workers/{worker.wallet}/containers").json["containers"][0]["containerName"]
        == "web"
    )


# --- what the worker client shows ---------------------------------------------------------


def test_containers_carry_their_cpu_and_memory(client, worker):
    containers = [
        {"containerName": "web", "port": "8080/tcp", "cpuPercent": 12.5, "memUsageMb": 256.25},
        {"containerName": "db", "cpuPercent": 0, "memUsageMb": 0},
        {"containerName": "idle"},
    ]
    assert worker.beat(client, minutes_ago(1), containers=containers).status_code == 200
    shown = client.get(f"/workers/{worker.wallet}/containers").json["containers"]
    assert [(c["containerName"], c["cpuPercent"], c["memUsageMb"]) for c in shown] == [
        ("db", 0, 0),
        ("idle", None, None),
        ("web", 12.5, 256.25),
    ]


def test_the_machine_facts_of_a_heartbeat_are_stored_and_kept_until_reported_again(client, worker):
    system = machine()
    first = worker.beat(client, minutes_ago(3), system=system, tailscaleIp="100.64.0.7")
    assert first.status_code == 200, first.json
    worker.beat(client, minutes_ago(2))  # an older agent's heartbeat: no system
    shown = client.get(f"/workers/{worker.wallet}").json
    assert (shown["cpuCores"], shown["ramTotalGb"], shown["storageTotalGb"]) == (4, 16, 200)
    # The address is what the last heartbeat said: none.
    assert shown["tailscaleIp"] is None
    worker.beat(client, minutes_ago(1), system={"cpuCores": 8}, tailscaleIp="100.64.0.8")
    shown = operator_client(client.application).get(f"/workers/{worker.wallet}").json
    assert (shown["cpuCores"], shown["ramTotalGb"], shown["tailscaleIp"]) == (8, 16, "100.64.0.8")


def bash_agent_body(wallet: str, ts: datetime, tailscale_ip: str = "") -> dict:
    """What the original bash agent sends every 300 s (unsigned)."""
    return {
        "walletAddress": wallet,
        "timestamp": format_timestamp(ts),
        "tailscaleIp": tailscale_ip,
        "hostname": "worker-7",
        "containers": [{"name": "web", "cpuPercent": 3.25, "memUsageMb": 120.5}],
        "system": {
            "cpuCores": 2,
            "cpuUsagePercent": 40.5,
            "ramTotalGb": 3.8,
            "ramUsedGb": 1.2,
            "storageTotalGb": 58.4,
            "storageUsedGb": 20.1,
        },
    }


def test_the_original_bash_agents_heartbeat_is_taken_with_signatures_off(make_app, history):
    app = make_app(require_signatures=False)
    client, operator = app.test_client(), operator_client(app)
    wallet = history.known(new_wallet())
    start = minutes_ago(10)

    first = client.post("/heartbeat", json=bash_agent_body(wallet, start))
    assert first.status_code == 200, first.json
    assert (first.json["action"], first.json["creditsEarned"]) == ("opened", 0)
    second = client.post("/heartbeat", json=bash_agent_body(wallet, start + timedelta(minutes=5)))
    # floor((10 + 5·2 + 3·3.8 + 5.84 + 15) × 1.2) = floor(62.688) = 62 for 300 s.
    assert second.json["creditsEarned"] == 62

    shown = operator.get(f"/workers/{wallet}").json
    assert (shown["hostname"], shown["tailscaleIp"], shown["cpuCores"]) == ("worker-7", None, 2)
    assert (shown["ramTotalGb"], shown["storageTotalGb"], shown["credits"]) == (3.8, 58.4, 62)
    [container] = shown["containers"]
    assert (container["containerName"], container["cpuPercent"], container["memUsageMb"]) == (
        "web",
        3.25,
        120.5,
    )
    later = bash_agent_body(wallet, start + timedelta(minutes=6), tailscale_ip="100.101.102.103")
    assert client.post("/heartbeat", json=later).status_code == 200
    assert operator.get(f"/workers/{wallet}").json["tailscaleIp"] == "100.101.102.103"


# --- POST /heartbeat without Flask's request handling (collector/web/pipeline.py) -----------


def request_count(status: str) -> float:
    labels = {"route": "/heartbeat", "method": "POST", "status": status}
    found = telemetry.METRICS.get_sample_value(
        "tassium_http_request_duration_seconds_count", labels
    )
    return found or 0.0


def test_a_heartbeat_is_answered_without_flasks_request_handling(app, client, worker, monkeypatch):
    before = request_count("200")

    def no_flask():
        raise AssertionError("Flask dispatched the request")

    monkeypatch.setattr(app, "full_dispatch_request", no_flask)
    answer = worker.beat(client, minutes_ago(1))
    assert (answer.status_code, answer.json["action"]) == (200, "opened")
    assert request_count("200") == before + 1  # timed as every request is
    assert client.get("/healthz").status_code == 500  # every other route goes through Flask


def test_an_unexpected_error_in_a_heartbeat_is_a_logged_500(client, worker, monkeypatch, caplog):
    def broken(*_args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(heartbeats, "receive", broken)
    before = utcnow()
    answer = worker.beat(client)
    assert answer.status_code == 500
    assert answer.json["error"] == InternalServerError.description
    assert_server_time(answer.json, before)
    assert "Exception on /heartbeat [POST]" in caplog.text
    assert "RuntimeError: a bug" in caplog.text


def test_a_heartbeat_answers_browsers_as_every_route_does(make_app):
    client = make_app(cors_origins=("https://ui.example",)).test_client()
    worker = FakeWorker()
    assert worker.enroll(client).status_code == 201
    raw, headers = worker.signed(worker.heartbeat_body())
    allowed = client.post(
        "/heartbeat", data=raw, headers={**headers, "Origin": "https://ui.example"}
    )
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ui.example"
    assert allowed.headers["Vary"] == "Origin"
    other = worker.beat(client)  # no Origin: still Vary, as every answer of this collector
    assert "Access-Control-Allow-Origin" not in other.headers
    assert other.headers["Vary"] == "Origin"


# --- large machines: containerCount ---------------------------------------------------------


def test_a_container_count_is_stored_and_shown_beside_the_listed_containers(
    worker, client, operator
):
    listed = [{"containerName": f"app-{n:02}", "state": "running"} for n in range(30)]
    answer = worker.beat(client, minutes_ago(6), listed, containerCount=3000)
    assert answer.status_code == 200, answer.json
    assert answer.json["containers"] == 30
    shown = operator.get(f"/workers/{worker.wallet}").json
    assert (shown["containerCount"], len(shown["containers"])) == (3000, 30)
    [point] = operator.get(f"/workers/{worker.wallet}/metrics").json["points"]
    assert point["containerCount"] == 3000
    assert "3000 containers (the first 20 listed)" in client.get("/").text


def test_without_a_count_the_list_is_the_machines_total(worker, client, operator):
    assert worker.beat(client, minutes_ago(6)).status_code == 200
    assert operator.get(f"/workers/{worker.wallet}").json["containerCount"] == 1


def test_a_workers_count_never_raises_its_credit(client, history):
    # Two workers on the same machine and list; one says it runs a million containers.
    earned, now = [], utcnow()
    for extra in ({}, {"containerCount": 1_000_000}):
        worker = FakeWorker()
        assert worker.enroll(client).status_code == 201
        history.known(worker.wallet)
        listed = [{"containerName": f"app-{n}"} for n in range(3)]
        worker.beat(client, minutes_ago(6, now), listed, system=machine(), **extra)
        answer = worker.beat(client, minutes_ago(1, now), listed, system=machine(), **extra)
        assert answer.status_code == 200, answer.json
        earned.append(answer.json["creditsEarned"])
    # floor((10 + 20 + 48 + 20 + 15 × 3) × 1.2) per 300 s: the three listed count.
    assert earned == [171, 171]


@pytest.mark.parametrize(
    ("count", "complaint"), [(0, "from the 1 containers listed"), ("many", "whole number")]
)
def test_a_container_count_that_is_not_one_is_refused_and_writes_nothing(
    worker, client, unchanged, count, complaint
):
    answer = worker.beat(client, minutes_ago(5), containerCount=count)
    assert answer.status_code == 400 and complaint in answer.json["error"]
