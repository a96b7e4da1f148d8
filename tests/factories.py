"""Small factories for keys, wallets and heartbeat bodies."""

import json
import secrets
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


class FakeWorker:
    """A worker as the collector sees it: a wallet and an Ed25519 key."""

    def __init__(self, wallet: str | None = None):
        self.wallet = wallet or new_wallet()
        self.key = Ed25519PrivateKey.generate()

    @property
    def public_key(self) -> str:
        return encode_public_key(self.key)

    def signed(self, body: bytes | dict) -> tuple[bytes, dict]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return raw, {SIGNATURE_HEADER: sign(self.key, raw), "Content-Type": "application/json"}

    def enroll(self, client, token: str | None = None):
        body = {"walletAddress": self.wallet, "publicKey": self.public_key}
        if token is not None:
            body["token"] = token
        raw, headers = self.signed(body)
        return client.post("/workers/enroll", data=raw, headers=headers)

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
    from collector import db  # imported here: agent tests use this module without Peewee

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
