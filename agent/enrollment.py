"""Enrolling this worker's key at the collector, proven by the wallet it earns for.

The agent asks the collector for a challenge (signed by its key, which proves it holds it);
the collector answers a short text naming itself, the wallet, this key and an expiry, and a
link to its page where the owner signs that text with their browser wallet. The agent prints
both and waits: until the page's signature has enrolled the key, or until the owner pastes a
signature made elsewhere (a hardware wallet, a CLI), which it sends itself. An operator's
token (``--token``) enrolls a fleet without any of this.
"""

import json
import select
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from agent.config import AgentConfig
from agent.errors import AgentError
from agent.keys import AgentKey
from agent.sender import Sender
from protocol import ProtocolError
from protocol.heartbeat import encode_public_key
from protocol.times import parse_timestamp, utcnow

# How often the collector is asked whether the page's signature has arrived.
POLL_SECONDS = 2.0


class EnrollmentRefused(AgentError):
    pass


class NoChallenges(AgentError):
    """A collector from before wallet-signed enrollment: it enrolls a key on its own word."""


@dataclass(frozen=True)
class Challenge:
    id: str
    message: str
    sign_url: str
    expires_at: str

    @classmethod
    def from_answer(cls, answer: object) -> "Challenge":
        try:
            return cls(
                answer["challengeId"], answer["message"], answer["signUrl"], answer["expiresAt"]
            )
        except (TypeError, KeyError):
            raise EnrollmentRefused("the collector's answer is not a challenge") from None


def wallet_has_key(sender: Sender, wallet: str) -> bool:
    """Whether the collector holds some key for this wallet (its public "enrolled" flag)."""
    status, worker = sender.request("GET", f"/workers/{wallet}")
    return status == 200 and isinstance(worker, dict) and worker.get("enrolled") is True


def holds_key(sender: Sender, config: AgentConfig, key: AgentKey) -> bool:
    """Whether the collector holds this very key for the wallet. The enrollment route takes
    the same key again with no proof and says "unchanged" (the key itself is shown only to
    the wallet's owner and the operator); any other key it refuses, enrolling nothing."""
    body = {"walletAddress": config.wallet, "publicKey": encode_public_key(key)}
    status, answer = sender.post_signed("/workers/enroll", json.dumps(body).encode())
    return status == 200 and isinstance(answer, dict) and answer.get("enrollment") == "unchanged"


def enroll_directly(sender: Sender, config: AgentConfig, key: AgentKey, token: str | None) -> str:
    """Enroll with an operator's token, or (``None``) as a collector from before
    wallet-signed enrollment takes it; what the collector did."""
    body = {"walletAddress": config.wallet, "publicKey": encode_public_key(key)}
    if token is not None:
        body["token"] = token
    status, answer = sender.post_signed("/workers/enroll", json.dumps(body).encode())
    if status in (200, 201) and isinstance(answer, dict):
        # A collector older than the "enrollment" field answered 200 both for the same key
        # again and for a key a token replaced: the token is what tells them apart there.
        return answer.get("enrollment") or (
            "enrolled" if status == 201 else "replaced" if token else "unchanged"
        )
    raise EnrollmentRefused(f"({status}) {error_of(answer)}")


def ask(sender: Sender, config: AgentConfig, key: AgentKey) -> Challenge:
    body = {"walletAddress": config.wallet, "publicKey": encode_public_key(key)}
    status, answer = sender.post_signed("/workers/enroll/challenge", json.dumps(body).encode())
    if status in (404, 405):
        raise NoChallenges()
    if status != 201:
        raise EnrollmentRefused(f"no challenge ({status}): {error_of(answer)}")
    return Challenge.from_answer(answer)


def send_signature(sender: Sender, challenge_id: str, signature: str) -> str:
    """Send the wallet's signature; what the collector did (``enrolled``, ``replaced``...)."""
    body = json.dumps({"signature": signature}).encode()
    status, answer = sender.post_signed(f"/workers/enroll/challenge/{challenge_id}", body)
    if status in (200, 201) and isinstance(answer, dict):
        return str(answer.get("enrollment", "enrolled"))
    raise EnrollmentRefused(f"signature refused ({status}): {error_of(answer)}")


def wait_for_signature(
    sender: Sender,
    config: AgentConfig,
    key: AgentKey,
    challenge: Challenge,
    *,
    typed: TextIO | None,
    until: float,
    say: Callable[[str], None],
) -> str:
    """Wait until the key is enrolled (the page's signature arrived) or the owner typed a
    signature on ``typed`` (a terminal), which is sent; what the collector did."""
    while time.monotonic() < until:
        line = _typed_line(typed, POLL_SECONDS) if typed is not None else _pause(POLL_SECONDS)
        if line:
            try:
                return send_signature(sender, challenge.id, line)
            except EnrollmentRefused as exc:
                say(f"{exc}; paste another, or sign on the page")
                continue
        status, shown = sender.request("GET", f"/workers/enroll/challenge/{challenge.id}")
        state = shown.get("status") if status == 200 and isinstance(shown, dict) else None
        if state == "used":
            if holds_key(sender, config, key):
                return "enrolled"
            raise EnrollmentRefused("the challenge was used, but this key is not the one enrolled")
        if state == "expired":
            raise EnrollmentRefused(
                f"no signature arrived before the challenge expired ({challenge.expires_at}): "
                "run tassium-agent enroll again"
            )
    raise EnrollmentRefused(
        f"no signature arrived in time; the challenge stays valid until "
        f"{challenge.expires_at}: sign it, or run tassium-agent enroll again"
    )


def seconds_left(challenge: Challenge) -> float:
    try:
        expires = parse_timestamp(challenge.expires_at, "expiresAt")
    except ProtocolError:
        return 0.0
    return max(0.0, (expires - utcnow()).total_seconds())


def _typed_line(typed: TextIO, timeout: float) -> str | None:
    ready, _, _ = select.select([typed], [], [], timeout)
    if not ready:
        return None
    return typed.readline().strip() or None


def _pause(seconds: float) -> None:
    time.sleep(seconds)


def error_of(answer: object) -> str:
    """The collector's sentence for a refusal."""
    if isinstance(answer, dict) and answer.get("error"):
        return str(answer["error"])
    return "the answer is not the collector's"
