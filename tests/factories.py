"""Small factories for keys, wallets and heartbeat bodies."""

import base64
import json
import secrets
import sys
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import AgentConfig
from protocol.heartbeat import SIGNATURE_HEADER, encode_public_key, sign
from protocol.times import format_timestamp, utcnow


def new_wallet() -> str:
    return "0x" + secrets.token_hex(20)


def new_stellar_wallet() -> str:
    """A G… strkey, as the Tassium front ends (Freighter) use."""
    from protocol.wallets import stellar_address

    return stellar_address(secrets.token_bytes(32))


def agent_config(url: str, state_dir: Path, **settings) -> AgentConfig:
    """An agent's settings (a new wallet unless one is given) with everything it keeps under
    ``state_dir``, as load_config derives them."""
    settings.setdefault("wallet", new_wallet())
    return AgentConfig(
        collector_url=url,
        state_dir=state_dir,
        key_path=state_dir / "agent.key",
        spool_path=state_dir / "spool",
        **settings,
    )


class Wallet:
    """A wallet its owner can sign with, as their browser wallet would: an EVM account
    (EIP-191 personal_sign, by eth-account) or a Stellar account (SEP-53, by stellar-sdk)."""

    def __init__(self, wallet_format: str = "evm"):
        self.wallet_format = wallet_format
        if wallet_format == "evm":
            # Imported here, it raises the recursion limit (tests/conftest.py says why that
            # matters): put back at once for the rest of the test.
            limit = sys.getrecursionlimit()
            from eth_account import Account

            sys.setrecursionlimit(limit)
            self._account = Account.create()
            self.address = self._account.address.lower()
        else:
            from stellar_sdk import Keypair

            self._keypair = Keypair.random()
            self.address = self._keypair.public_key

    def sign(self, message: str) -> str:
        """The signature a wallet gives for ``message``, as the collector's page sends it."""
        if self.wallet_format == "evm":
            from eth_account.messages import encode_defunct

            signed = self._account.sign_message(encode_defunct(text=message))
            return "0x" + bytes(signed.signature).hex()
        return base64.b64encode(self._keypair.sign_message(message)).decode()

    def sign_in(self, client, prefix: str = "") -> str:
        """Sign in at the collector behind ``client`` (a Flask test client, or an httpx.Client
        with the collector's base_url) as a wallet app would: ask for the message, sign it,
        trade it for a session token."""
        asked = client.post(f"{prefix}/auth/challenge", json={"wallet": self.address})
        assert asked.status_code == 201, asked.text
        message = _json(asked)["message"]
        opened = client.post(
            f"{prefix}/auth/session", json={"message": message, "signature": self.sign(message)}
        )
        assert opened.status_code == 201, opened.text
        return _json(opened)["token"]


def _json(response) -> dict:
    """The JSON of a Flask test response (a property) or an httpx one (a method)."""
    return response.json() if callable(response.json) else response.json


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class FakeWorker:
    """A worker as the collector sees it: a wallet and an Ed25519 key. Made with a
    ``Wallet`` (a new EVM one by default) its owner can sign for it; made with an address
    alone, it is a machine whose owner cannot (an impostor, or a worker of an operator's
    token)."""

    def __init__(self, wallet: "str | Wallet | None" = None):
        self.owner = wallet if isinstance(wallet, Wallet) else None
        if wallet is None:
            self.owner = Wallet()
        self.wallet = self.owner.address if self.owner else wallet
        self.key = Ed25519PrivateKey.generate()

    @classmethod
    def stellar(cls) -> "FakeWorker":
        return cls(Wallet("stellar"))

    def another_machine(self) -> "FakeWorker":
        """Another machine of the same owner: the same wallet, a new key."""
        return FakeWorker(self.owner or self.wallet)

    @property
    def public_key(self) -> str:
        return encode_public_key(self.key)

    def signed(self, body: bytes | dict) -> tuple[bytes, dict]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return raw, {SIGNATURE_HEADER: sign(self.key, raw), "Content-Type": "application/json"}

    def enroll(self, client, token: str | None = None):
        """Enroll through a Flask test client as the agent does: with the operator's
        ``token``, or with the owner's signature over a challenge when there is an owner (else
        the request the agent sends without either)."""
        if token is not None or self.owner is None:
            body = {"walletAddress": self.wallet, "publicKey": self.public_key}
            if token is not None:
                body["token"] = token
            raw, headers = self.signed(body)
            return client.post("/workers/enroll", data=raw, headers=headers)
        challenge = self.challenge(client)
        if challenge.status_code != 201:
            return challenge
        return self.sign_challenge(client, challenge.json)

    def challenge_at(self, url: str):
        """Ask a served collector for a challenge over real HTTP (httpx), as the agent does."""
        import httpx  # agent tests that use this module need no HTTP client

        raw, headers = self.signed({"walletAddress": self.wallet, "publicKey": self.public_key})
        return httpx.post(
            url + "/workers/enroll/challenge", content=raw, headers=headers, timeout=30
        )

    def enroll_at(self, url: str):
        """Enroll at a served collector over real HTTP (httpx), as the agent and the owner's
        page do: the challenge, then the owner's signature over it."""
        import httpx

        challenge = self.challenge_at(url)
        if challenge.status_code != 201:
            return challenge
        found = challenge.json()
        return httpx.post(
            f"{url}/workers/enroll/challenge/{found['challengeId']}",
            json={"signature": self.owner.sign(found["message"])},
            timeout=30,
        )

    def challenge(self, client):
        """Ask for a challenge, as ``tassium-agent enroll`` does."""
        raw, headers = self.signed({"walletAddress": self.wallet, "publicKey": self.public_key})
        return client.post("/workers/enroll/challenge", data=raw, headers=headers)

    def sign_challenge(self, client, challenge: dict, signer: "Wallet | None" = None):
        """The owner (or ``signer``) signs the challenge, as on the collector's page."""
        signature = (signer or self.owner).sign(challenge["message"])
        path = f"/workers/enroll/challenge/{challenge['challengeId']}"
        return client.post(path, json={"signature": signature})

    def heartbeat_body(
        self, ts: datetime | None = None, containers: list | None = None, **extra
    ) -> dict:
        body = {
            "walletAddress": self.wallet,
            "timestamp": format_timestamp(ts or utcnow()),
            "containers": containers
            if containers is not None
            else [{"containerName": "web", "port": "0.0.0.0:8080->80/tcp"}],
        }
        body.update(extra)
        return body

    def beat(self, client, ts: datetime | None = None, containers: list | None = None, **extra):
        raw, headers = self.signed(self.heartbeat_body(ts, containers, **extra))
        return client.post("/heartbeat", data=raw, headers=headers)

    def ping_body(self, ts: datetime | None = None) -> dict:
        return {"walletAddress": self.wallet, "timestamp": format_timestamp(ts or utcnow())}

    def ping(self, client, ts: datetime | None = None):
        """A signed ping through a Flask test client."""
        raw, headers = self.signed(self.ping_body(ts))
        return client.post("/heartbeat/ping", data=raw, headers=headers)


def enroll_with_token(wallet: str, public_key: str, now: datetime | None = None) -> str:
    """Enroll a key directly, outside any app, as an operator enrolls a fleet: with a token
    issued for the wallet. For tests that need enrolled workers, not enrollment."""
    from collector.uptime.enrollment import enroll, issue_token  # agent tests import no Peewee

    now = now or utcnow()
    return enroll(wallet, public_key, now, token=issue_token(wallet, timedelta(hours=1), now))


def machine(**changes) -> dict:
    """A heartbeat's ``system``: a 4-core, 16 GB machine with 200 GB for Docker, busy (12.5 %
    CPU). Its credit rate with one container: floor((10 + 20 + 48 + 20 + 15) × 1.2) = 135."""
    return {
        "cpuCores": 4,
        "cpuUsagePercent": 12.5,
        "ramTotalGb": 16,
        "ramUsedGb": 6.5,
        "storageTotalGb": 200,
        "storageUsedGb": 50,
        **changes,
    }


# A valid EIP-55 address, for bodies that name a creator.
CREATOR = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


def deployment(**fields) -> dict:
    """A valid deployment body; keyword arguments change or add fields."""
    return {"name": "web-1", "github": "tassium/app", "creator": CREATOR, **fields}


def minutes_ago(n: float, now: datetime | None = None) -> datetime:
    return (now or utcnow()) - timedelta(minutes=n)


@contextmanager
def connected(url: str):
    """Bind the collector's database to ``url`` for a block (outside any app or command), then
    close every connection it opened."""
    from collector.store import db  # imported here: agent tests use this module without Peewee

    database = db.bind(url)
    try:
        with database.connection_context():
            yield database
    finally:
        if hasattr(database, "close_all"):
            database.close_all()


def at_once(target, url: str, processes: int = 4) -> list:
    """Run ``target(url, barrier, results)`` in ``processes`` fresh interpreters that wait for
    each other at the barrier before the racing part; what each put on ``results``, and each
    must exit cleanly."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    children = [
        context.Process(target=target, args=(url, barrier, results)) for _ in range(processes)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    return outcomes


def sent_heartbeat(wallet: str) -> dict:
    """A complete heartbeat body as an agent sends it."""
    return {
        "walletAddress": wallet,
        "timestamp": "2026-11-24T21:00:00Z",
        "containers": [
            {
                "containerName": "web",
                "port": "0.0.0.0:8080->80/tcp",
                "id": "c0ffee",
                "image": "local/busybox",
                "state": "running",
                "health": "healthy",
            },
            {"containerName": "worker"},
        ],
        "agent": {"version": "0.1.0", "hostname": "node-1", "dockerAvailable": True},
    }
