"""Every call of UI-V1.md, as the Tassium front ends make it, over real HTTP against the served
collector on SQLite and PostgreSQL, with Stellar wallets and a browser's CORS preflight; each
field the clients read is checked."""

import json
from datetime import timedelta

import httpx
import pytest

from protocol.times import format_timestamp, parse_timestamp, utcnow
from tests.collector.fake_deployer import DEPLOYER_SECRET, FakeDeployer, builds
from tests.factories import FakeWorker, Wallet, bearer, new_stellar_wallet
from tests.polling import wait_for

pytestmark = pytest.mark.slow  # a served collector (gunicorn) per test

ORIGIN = "https://app.tassium.example"
DEPLOYMENT_FIELDS = {
    "id", "appName", "githubRepo", "branch", "port", "creator", "status", "url",
    "errorMessage", "replicas", "createdAt", "updatedAt",
}  # fmt: skip
SYSTEM = {
    "cpuCores": 4,
    "cpuUsagePercent": 12.5,
    "ramTotalGb": 8.0,
    "ramUsedGb": 3.25,
    "storageTotalGb": 100.0,
    "storageUsedGb": 40.0,
}


class Browser:
    """Requests as the front ends' fetch() makes them: JSON bodies, an Origin, no
    Authorization (unless an updated app signed in), and a preflight before anything that is
    not a simple request."""

    def __init__(self, base_url: str):
        self.http = httpx.Client(base_url=base_url + "/api/v1", timeout=10)

    def preflight(self, method: str, path: str) -> httpx.Response:
        response = self.http.options(
            path,
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert response.status_code in (200, 204), response.text
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert method in response.headers["Access-Control-Allow-Methods"]
        assert "content-type" in response.headers["Access-Control-Allow-Headers"].lower()
        return response

    def call(
        self, method: str, path: str, body: dict | None = None, token: str | None = None
    ) -> httpx.Response:
        headers = {"Origin": ORIGIN, **(bearer(token) if token else {})}
        if body is not None:
            self.preflight(method, path)
            headers["Content-Type"] = "application/json"
        elif method != "GET":
            self.preflight(method, path)
        response = self.http.request(
            method, path, content=json.dumps(body) if body is not None else None, headers=headers
        )
        assert response.headers.get("Access-Control-Allow-Origin") == "*"
        if not response.is_success:
            # The clients show data.error.
            assert isinstance(response.json()["error"], str) and response.json()["error"]
        return response


# The unchanged app writes anonymously: a collector serving it says so (docs/api.md, "The
# Tassium front ends"); its env changes need the creator's sign-in all the same.
COMPATIBLE = {"wallet_format": "stellar", "processes": 1, "insecure_anonymous_deployments": True}


@pytest.fixture
def served(serve_collector):
    return serve_collector(**COMPATIBLE)


@pytest.fixture
def browser(served):
    client = Browser(served.url)
    yield client
    client.http.close()


def test_the_deployers_app(browser, served):
    owner = Wallet("stellar")
    creator = owner.address
    assert browser.call("GET", f"/deployments?creator={creator}").json() == []

    body = {
        "appName": "shop-1",
        "githubRepo": "tassium/shop",
        "creator": creator,
        "branch": "release",
        "port": 3000,
    }
    created = browser.call("POST", "/deployments", body)
    assert created.status_code == 201
    row = created.json()
    assert set(row) == DEPLOYMENT_FIELDS
    assert row["appName"] == "shop-1" and row["githubRepo"] == "tassium/shop"
    assert row["branch"] == "release" and row["creator"] == creator
    assert row["status"] == "pending" and row["url"] is None and row["errorMessage"] is None
    assert row["replicas"] == 1
    parse_timestamp(row["createdAt"]), parse_timestamp(row["updatedAt"])

    listed = browser.call("GET", f"/deployments?creator={creator}").json()
    assert isinstance(listed, list) and [d["appName"] for d in listed] == ["shop-1"]
    # Another creator's list does not show it.
    assert browser.call("GET", f"/deployments?creator={new_stellar_wallet()}").json() == []

    duplicate = browser.call("POST", "/deployments", body)
    assert duplicate.status_code == 409
    bad = browser.call("POST", "/deployments", {**body, "appName": "Shop 1"})
    assert bad.status_code == 400 and "name" in bad.json()["error"]

    # Without a deployer, the operator moves the status on through our own route; the url
    # appears (and the app lists the deployment) once it succeeded.
    for status in ("processing", "success"):
        moved = httpx.patch(
            f"{served.url}/deployments/shop-1/status",
            json={"status": status},
            headers=served.operator,
            timeout=10,
        )
        assert moved.status_code == 200, moved.text
    one = browser.call("GET", "/deployments/shop-1").json()
    assert one["status"] == "success" and one["url"] == "https://shop-1.tassium.app"

    scaled = browser.call("PATCH", "/deployments/shop-1/replicas", {"replicas": 3})
    assert scaled.status_code == 200 and scaled.json()["replicas"] == 3
    assert set(scaled.json()) == DEPLOYMENT_FIELDS
    assert parse_timestamp(scaled.json()["updatedAt"]) >= parse_timestamp(one["updatedAt"])
    for replicas in (0, 11, "3"):
        refused = browser.call("PATCH", "/deployments/shop-1/replicas", {"replicas": replicas})
        assert refused.status_code == 400
    assert browser.call("PATCH", "/deployments/nope/replicas", {"replicas": 2}).status_code == 404
    assert browser.call("GET", "/deployments/shop-1").json()["replicas"] == 3

    env_vars = {"envVars": {"API_KEY": "s3cret"}}
    anonymous = browser.call("PATCH", "/deployments/shop-1/env", env_vars)
    assert anonymous.status_code == 401 and "sign in" in anonymous.json()["error"]
    # An updated app signs in through the same dialect and sends the session.
    token = owner.sign_in(browser.http)
    env = browser.call("PATCH", "/deployments/shop-1/env", env_vars, token=token)
    assert env.status_code == 422 and "deployer" in env.json()["error"]
    with_env = browser.call("POST", "/deployments", {**body, "appName": "shop-2", "envVars": {}})
    assert with_env.status_code == 201

    deleted = browser.call("DELETE", "/deployments/shop-1")
    assert deleted.status_code == 200 and deleted.json() == {"success": True}
    gone = browser.call("GET", "/deployments/shop-1")
    assert gone.status_code == 404
    assert browser.call("DELETE", "/deployments/shop-1").status_code == 404


def _enroll(served, worker: FakeWorker) -> None:
    response = worker.enroll_at(served.url)
    assert response.status_code == 201, response.text


def _post_signed(served, worker: FakeWorker, path: str, body: dict) -> httpx.Response:
    raw, headers = worker.signed(body)
    return httpx.post(served.url + "/api/v1" + path, content=raw, headers=headers, timeout=10)


def test_the_worker_owners_client(browser, served, history):
    worker = FakeWorker.stellar()
    # Before the worker exists: every read answers, none fails.
    assert browser.call("GET", f"/workers/{worker.wallet}").json() == {"exists": False}
    assert browser.call("GET", f"/workers/{worker.wallet}/containers").json() == []
    unknown = browser.call("GET", f"/workers/{worker.wallet}/status").json()
    assert unknown["status"] == "UNKNOWN" and unknown["lastPing"] is None
    assert browser.call("GET", f"/workers/{worker.wallet}/metrics?hours=1").json() == []

    _enroll(served, worker)
    history.known(worker.wallet)
    now = utcnow()
    containers = [
        {"containerName": "web", "port": "0.0.0.0:8080->80/tcp", "cpuPercent": 1.5,
         "memUsageMb": 42.0},
        {"containerName": "db", "cpuPercent": 0.25, "memUsageMb": 300.5},
    ]  # fmt: skip
    answers = []
    for minutes in (10, 5):
        body = worker.heartbeat_body(
            now - timedelta(minutes=minutes),
            containers,
            system=SYSTEM,
            tailscaleIp="100.64.0.7",
        )
        answer = _post_signed(served, worker, "/heartbeat", body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["success"] is True
        answers.append(answer.json()["creditsEarned"])
    # floor((10 + 5·4 + 3·8 + 100/10 + 15·2) × 1.2) = 112 per 300 s, and the second heartbeat
    # counted 300 s of uptime; the first only opened the window.
    assert answers == [0, 112]

    ping = _post_signed(
        served,
        worker,
        "/heartbeat/ping",
        {"walletAddress": worker.wallet, "timestamp": format_timestamp(utcnow())},
    )
    assert ping.status_code == 200 and ping.json()["success"] is True
    unsigned = httpx.post(
        served.url + "/api/v1/heartbeat/ping",
        json={"walletAddress": worker.wallet, "timestamp": format_timestamp(utcnow())},
    )
    assert unsigned.status_code == 401

    shown = browser.call("GET", f"/workers/{worker.wallet}").json()
    assert shown["exists"] is True
    assert shown["credits"] == 112 and f"{shown['credits']:,}" == "112"
    assert shown["isActive"] is True
    # The machine's address is its owner's: null to the unchanged client (which shows none),
    # and given to the owner's session.
    assert shown["tailscaleIp"] is None and shown["hostname"] is None
    token = worker.owner.sign_in(browser.http)
    mine = browser.call("GET", f"/workers/{worker.wallet}", token=token).json()
    assert mine["tailscaleIp"] == "100.64.0.7"
    assert shown["cpuCores"] == 4 and shown["ramTotalGb"] == 8.0
    assert shown["storageTotalGb"] == 100.0
    assert shown["status"] == "HEALTHY"
    assert parse_timestamp(shown["lastPing"]) >= now - timedelta(seconds=5)
    parse_timestamp(shown["lastSeen"])

    listed = browser.call("GET", f"/workers/{worker.wallet}/containers").json()
    assert [(c["name"], c["containerName"]) for c in listed] == [("db", "db"), ("web", "web")]
    assert [(c["cpuPercent"], c["memUsageMb"]) for c in listed] == [(0.25, 300.5), (1.5, 42.0)]

    status = browser.call("GET", f"/workers/{worker.wallet}/status").json()
    assert status["status"] == "HEALTHY" and status["lastPing"] == shown["lastPing"]

    answer = browser.call("GET", f"/workers/{worker.wallet}/metrics?hours=1")
    points = answer.json()
    # Still a plain array; how many the hour holds is a header the page may read.
    assert answer.headers["X-Total-Count"] == "2"
    assert "X-Total-Count" in answer.headers["Access-Control-Expose-Headers"]
    assert [p["timestamp"] for p in points] == [
        format_timestamp(now - timedelta(minutes=m)) for m in (10, 5)
    ]
    for point in points:
        assert point["cpuUsagePercent"] == 12.5 and point["ramUsedGb"] == 3.25
        assert point["ramTotalGb"] == 8.0 and point["containerCount"] == 2
    assert [p["creditsEarned"] for p in points] == [0, 112]
    assert browser.call("GET", f"/workers/{worker.wallet}/metrics?hours=0").status_code == 400

    uptime = browser.call("GET", f"/workers/{worker.wallet}/uptime").json()
    assert uptime == [
        {
            "startTime": format_timestamp(now - timedelta(minutes=10)),
            "endTime": format_timestamp(now - timedelta(minutes=5)),
            "durationMinutes": 5.0,
        }
    ]
    everyone = browser.call("GET", "/workers").json()
    assert [w["walletAddress"] for w in everyone] == [worker.wallet]

    bad = browser.call("GET", "/workers/0x1234/status")
    assert bad.status_code == 400


def test_the_original_bash_agent_on_a_collector_without_signatures(serve_collector):
    served = serve_collector(wallet_format="stellar", require_signatures=False, processes=1)
    wallet = new_stellar_wallet()
    http = httpx.Client(base_url=served.url + "/api/v1", timeout=10)
    stamp = format_timestamp(utcnow().replace(microsecond=0))
    # Its first tick pings before its first heartbeat has created the worker.
    assert http.post("/heartbeat/ping", json={"walletAddress": wallet, "timestamp": stamp})
    body = {
        "walletAddress": wallet,
        "timestamp": stamp,
        "tailscaleIp": "",
        "hostname": "worker-7",
        "containers": [{"name": "web", "cpuPercent": 0.5, "memUsageMb": 12.25}],
        "system": {**SYSTEM, "cpuUsagePercent": 3},
    }
    answer = http.post("/heartbeat", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"success": True, "creditsEarned": 0}
    ping = http.post("/heartbeat/ping", json={"walletAddress": wallet, "timestamp": stamp})
    assert ping.status_code == 200 and ping.json() == {"success": True}

    shown = http.get(f"/workers/{wallet}").json()
    assert shown["exists"] and shown["tailscaleIp"] is None and shown["cpuCores"] == 4
    assert http.get(f"/workers/{wallet}/status").json()["status"] == "HEALTHY"
    listed = http.get(f"/workers/{wallet}/containers").json()
    assert [(c["name"], c["memUsageMb"]) for c in listed] == [("web", 12.25)]
    own = httpx.get(f"{served.url}/workers/{wallet}", headers=served.operator).json()
    assert own["hostname"] == "worker-7"
    http.close()


def test_the_deployers_app_with_a_deployer(serve_collector):
    with FakeDeployer(
        {
            "POST /api/v1/deploy/new": builds("https://shop.apps.example", delay=0.5),
            "PATCH /api/v1/apps/shop/env": builds(),
            "DELETE /api/v1/apps/shop": builds(),
        }
    ) as deployer:
        served = serve_collector(
            **COMPATIBLE,
            deployer_url=deployer.url,
            deployer_secret=DEPLOYER_SECRET,
            deployer_repositories=["github.com/tassium"],
        )
        browser = Browser(served.url)
        owner = Wallet("stellar")
        creator = owner.address
        body = {"appName": "shop", "githubRepo": "tassium/shop", "creator": creator,
                "branch": "main", "port": 3000, "envVars": {"API_KEY": "s3cret"}}  # fmt: skip
        created = browser.call("POST", "/deployments", body)
        assert created.status_code == 201 and created.json()["status"] == "processing"
        assert created.json()["url"] is None

        def listed():
            shown = browser.call("GET", f"/deployments?creator={creator}").json()
            return shown if shown[0]["status"] != "processing" else None

        (shown,) = wait_for(listed, "the build's answer")
        assert shown["status"] == "success" and shown["url"] == "https://shop.apps.example"

        token = owner.sign_in(browser.http)
        env = browser.call("PATCH", "/deployments/shop/env", {"envVars": {"API_KEY": "new"}}, token)
        assert env.status_code == 200 and env.json() == {"success": True}
        deleted = browser.call("DELETE", "/deployments/shop")
        assert deleted.json() == {"success": True}
        assert [r.json()["env_vars"] for r in deployer.requests if r.body] == [
            {"API_KEY": "s3cret"},
            {"API_KEY": "new"},
        ]
        browser.http.close()
