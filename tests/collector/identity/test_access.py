"""collector/identity/access.py through the served collector (gunicorn) on SQLite and PostgreSQL: a
stranger, and a wallet signed in as someone else, try each attack of issue 21; each is
refused with the status in its name and changes nothing. Then what each may do: owners
their own deployments, the operator everything, and the front ends' compatibility setting
exactly the original app's anonymous calls."""

import signal
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
import yaml

from collector.store.models import SignInChallenge, WalletSession
from protocol.times import parse_timestamp, utcnow
from tests.conftest import OPERATOR_TOKEN, free_port, launch_collector, receipt_key_file
from tests.factories import Wallet, bearer, deployment, new_wallet

pytestmark = pytest.mark.slow  # a served collector per module and backend

OPERATOR = bearer(OPERATOR_TOKEN)


@dataclass
class Stage:
    """A served collector with the operator's token, a victim who signed in and deployed,
    and mallory, signed in as another wallet."""

    http: httpx.Client
    victim: Wallet
    victim_token: str
    mallory_token: str

    def state(self) -> list:
        """Everything an attack could change, as the operator reads it."""
        return [
            self.http.get(path, headers=OPERATOR).json()
            for path in (f"/deployments?creator={self.victim.address}", "/payouts", "/payments")
        ]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def stage(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp("access")
    if request.param == "sqlite":
        database_url = f"sqlite:///{directory / 'collector.db'}"
    else:
        database_url = request.getfixturevalue("postgres").fresh_database(migrated=False)
    port = free_port()
    path = directory / "collector.yaml"
    settings = {
        "database_url": database_url,
        "receipt_key_file": receipt_key_file(directory),
        "migrate_on_start": True,
        "sweep_interval": 0,
        "host": "127.0.0.1",
        "port": port,
        "api_token": OPERATOR_TOKEN,
        "rate_limit_writes": "0",  # the table is many writes from one address
    }
    path.write_text(yaml.safe_dump(settings))
    path.chmod(0o600)
    served = launch_collector(path, port, directory / "serve.log")
    http = httpx.Client(base_url=served.url, timeout=10)
    victim, mallory = Wallet(), Wallet()
    victim_token = victim.sign_in(http)
    created = http.post(
        "/deployments",
        json=deployment(name="victim-app", creator=victim.address),
        headers=bearer(victim_token),
    )
    assert created.status_code == 201, created.text
    yield Stage(http, victim, victim_token, mallory.sign_in(http))
    http.close()
    served.stop(signal.SIGINT)


def _this_month() -> str:
    return utcnow().strftime("%Y-%m")


# Every write a stranger tried against the README's collector, and what they read.
ATTEMPTS = {
    "scales-the-victims-deployment": ("PATCH", "/deployments/victim-app/replicas", {"replicas": 9}),
    "deletes-the-victims-deployment": ("DELETE", "/deployments/victim-app", None),
    "marks-the-victims-deployment-a-success": (
        "PATCH", "/deployments/victim-app/status", {"status": "processing"}
    ),
    "sends-env-to-the-victims-deployment": (
        "PATCH", "/deployments/victim-app/env", {"envVars": {"DATABASE_URL": "postgres://evil"}}
    ),
    "deploys-a-phishing-url-in-the-victims-name": (
        "POST", "/deployments", {**deployment(name="phish", url="https://phish.example")}
    ),
    "scales-through-the-apps-dialect": (
        "PATCH", "/api/v1/deployments/victim-app/replicas", {"replicas": 9}
    ),
    "deletes-through-the-apps-dialect": ("DELETE", "/api/v1/deployments/victim-app", None),
    "sends-env-through-the-apps-dialect": (
        "PATCH", "/api/v1/deployments/victim-app/env", {"envVars": {"DATABASE_URL": "x"}}
    ),
    "records-a-payout-of-1-for-this-month": (
        "POST", "/payouts", {"period": _this_month(), "budget": "1"}
    ),
    "records-a-payment-of-10e21": (
        "POST", "/payments", {"name": "loot", "amount": str(10**21), "creator": new_wallet()}
    ),
    "issues-an-enrollment-token": ("POST", "/workers/tokens", {"walletAddress": new_wallet()}),
    "reads-the-payouts": ("GET", "/payouts", None),
    "reads-the-payments": ("GET", "/payments", None),
    "exports-a-payout": ("GET", f"/payouts/export.csv?period={_this_month()}&budget=100", None),
    "reads-the-fleet-report": ("GET", "/reports/fleet?period=24h", None),
    "downloads-the-fleet-report": ("GET", "/reports/fleet.csv?period=24h", None),
    "reads-the-victims-worker-report": ("GET", "/reports/workers/{victim}?period=24h", None),
}  # fmt: skip
# Mallory, signed in, is known and refused (403); so is a write for another's wallet.
MALLORY_STATUS = 403


def _attempt(stage: Stage, name: str, headers: dict) -> httpx.Response:
    method, path, body = ATTEMPTS[name]
    if body is not None and body.get("creator") == deployment()["creator"]:
        body = {**body, "creator": stage.victim.address}
    path = path.replace("{victim}", stage.victim.address)
    return stage.http.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("name", ATTEMPTS)
def test_a_stranger_is_refused_with_401(stage, name):
    before = stage.state()
    answer = _attempt(stage, name, {})
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]
    assert stage.state() == before


@pytest.mark.parametrize("name", ATTEMPTS)
def test_a_wallet_signed_in_as_someone_else_is_refused_with_403(stage, name):
    before = stage.state()
    answer = _attempt(stage, name, bearer(stage.mallory_token))
    assert answer.status_code == MALLORY_STATUS, answer.text
    assert stage.state() == before


@pytest.mark.parametrize(
    "token", ["tss_" + "A" * 43, "not-a-token", OPERATOR_TOKEN[:-1] + "x"], ids=str.__len__
)
def test_a_made_up_token_is_refused_with_401(stage, token):
    before = stage.state()
    answer = _attempt(stage, "deletes-the-victims-deployment", bearer(token))
    assert answer.status_code == 401, answer.text
    assert stage.state() == before


# --- what each may do -------------------------------------------------------------------------


@pytest.mark.parametrize("wallet_format", ["evm", "stellar"])
def test_owners_write_their_own_deployments_and_the_operator_any(serve_collector, wallet_format):
    served = serve_collector(wallet_format=wallet_format)
    http = httpx.Client(base_url=served.url, timeout=10)
    owner, other = Wallet(wallet_format), Wallet(wallet_format)
    mine, theirs = bearer(owner.sign_in(http)), bearer(other.sign_in(http))
    body = deployment(name="mine", creator=owner.address)
    assert http.post("/deployments", json=body, headers=mine).status_code == 201
    assert http.post("/deployments", json=body | {"name": "x"}, headers=theirs).status_code == 403
    for status in ("processing", "success"):
        moved = http.patch("/deployments/mine/status", json={"status": status}, headers=mine)
        assert moved.status_code == 200, moved.text
    scaled = http.patch("/deployments/mine/replicas", json={"replicas": 3}, headers=mine)
    assert scaled.json()["replicas"] == 3
    v1 = http.patch("/api/v1/deployments/mine/replicas", json={"replicas": 4}, headers=mine)
    assert v1.json()["replicas"] == 4
    assert http.delete("/deployments/mine", headers=theirs).status_code == 403
    assert http.get("/reports/workers/" + owner.address, headers=mine).status_code == 404
    assert http.delete("/deployments/mine", headers=mine).status_code == 204
    # The operator acts for anybody.
    assert http.post("/deployments", json=body, headers=served.operator).status_code == 201
    assert http.delete("/api/v1/deployments/mine", headers=served.operator).status_code == 200
    http.close()


def test_without_an_api_token_operator_routes_are_closed_to_everyone(serve_collector):
    served = serve_collector(api_token=None)  # the README's first command
    http = httpx.Client(base_url=served.url, timeout=10)
    token = bearer(Wallet().sign_in(http))
    for headers in ({}, token):
        refused = http.post(
            "/payouts", json={"period": _this_month(), "budget": "1"}, headers=headers
        )
        assert refused.status_code == 403
        assert "has no api_token: set api_token" in refused.json()["error"]
        assert http.get("/payments", headers=headers).status_code == 403
    http.close()


def test_the_compatibility_setting_lets_the_original_apps_anonymous_calls_through_only(
    serve_collector,
):
    served = serve_collector(insecure_anonymous_deployments=True)
    http = httpx.Client(base_url=served.url, timeout=10)
    victim = Wallet()
    app = {"appName": "shop", "githubRepo": "tassium/shop", "creator": victim.address}
    # What it exposes (docs/api.md): anyone may create, scale and delete through /api/v1.
    assert http.post("/api/v1/deployments", json=app).status_code == 201
    assert http.patch("/api/v1/deployments/shop/replicas", json={"replicas": 2}).status_code == 200
    # Never env, never our own routes, never money or enrollment.
    assert http.patch("/api/v1/deployments/shop/env", json={"envVars": {}}).status_code == 401
    assert http.patch("/deployments/shop/replicas", json={"replicas": 3}).status_code == 401
    assert http.post("/deployments", json=deployment(name="own")).status_code == 401
    assert http.post("/payouts", json={"period": _this_month(), "budget": "1"}).status_code == 401
    assert http.post("/workers/tokens", json={"walletAddress": new_wallet()}).status_code == 401
    # A wallet signed in is still held to its own wallet.
    mallory = bearer(Wallet().sign_in(http))
    assert http.delete("/api/v1/deployments/shop", headers=mallory).status_code == 403
    assert http.delete("/api/v1/deployments/shop").status_code == 200
    http.close()


def test_a_session_lasts_session_ttl(serve_collector):
    served = serve_collector(session_ttl=60)
    with httpx.Client(base_url=served.url, timeout=10) as http:
        token = Wallet().sign_in(http)
        expires = http.get("/auth/session", headers=bearer(token)).json()["expiresAt"]
    assert parse_timestamp(expires) - utcnow() <= timedelta(seconds=60)


def test_an_expired_replayed_or_foreign_sign_in_opens_no_session(serve_collector, dbconn):
    served = serve_collector()
    http = httpx.Client(base_url=served.url, timeout=10)
    wallet = Wallet()

    def issued() -> str:
        return http.post("/auth/challenge", json={"wallet": wallet.address}).json()["message"]

    def sign_in(message: str) -> httpx.Response:
        return http.post(
            "/auth/session", json={"message": message, "signature": wallet.sign(message)}
        )

    message = issued()
    assert sign_in(message).status_code == 201
    replayed = sign_in(message)
    assert replayed.status_code == 401 and "used already" in replayed.json()["error"]
    foreign = sign_in(issued().replace("127.0.0.1:", "tassium.evil.example:", 1))
    assert foreign.status_code == 401 and "tassium.evil.example" in foreign.json()["error"]
    late = issued()
    SignInChallenge.update(expires_at=utcnow() - timedelta(seconds=1)).where(
        SignInChallenge.used_at.is_null()
    ).execute()
    expired = sign_in(late)
    assert expired.status_code == 401 and "expired" in expired.json()["error"]
    assert WalletSession.select().count() == 1
    http.close()
