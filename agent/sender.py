"""Delivering heartbeats to the collector with httpx, and the backoff between failures."""

import random
from dataclasses import dataclass, field

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import AgentConfig
from agent.errors import DeliveryError, Rejected, translated
from protocol.heartbeat import SIGNATURE_HEADER, sign

# Refusals that no retry can cure: the body itself is wrong or too old. Everything else
# (5xx, 401/404 before enrollment, network errors) is kept and retried.
PERMANENT = {400, 413, 422}


class Sender:
    def __init__(self, config: AgentConfig, key: Ed25519PrivateKey):
        self.key = key
        # trust_env: HTTPS_PROXY / NO_PROXY from the environment are honoured.
        self.client = httpx.Client(
            base_url=config.collector_url,
            timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
            trust_env=True,
            headers={"User-Agent": "tassium-agent"},
        )

    def post_signed(self, path: str, body: bytes) -> httpx.Response:
        headers = {SIGNATURE_HEADER: sign(self.key, body), "Content-Type": "application/json"}
        with translated({httpx.HTTPError: DeliveryError}, f"POST {path}"):
            return self.client.post(path, content=body, headers=headers)

    def deliver(self, body: bytes) -> int:
        """Send one heartbeat; return 200, or 409 (already delivered: a replay); raise
        Rejected when it can never be accepted, DeliveryError when it may be later."""
        response = self.post_signed("/heartbeat", body)
        if response.status_code in (200, 409):
            return response.status_code
        message = _error_message(response)
        if response.status_code in PERMANENT:
            raise Rejected(response.status_code, message)
        raise DeliveryError(f"collector answered {response.status_code}: {message}")

    def close(self) -> None:
        self.client.close()


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return response.text[:200]


@dataclass
class Backoff:
    """Exponential backoff with full jitter between base and the cap."""

    base: float
    cap: float
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def failed(self) -> float:
        """Record a failure; return how long to wait before the next attempt."""
        self.failures += 1
        ceiling = min(self.cap, self.base * 2 ** (self.failures - 1))
        return self.rng.uniform(ceiling / 2, ceiling)

    def succeeded(self) -> None:
        self.failures = 0
