"""The heartbeat body and its Ed25519 signature.

The signature covers the exact bytes of the request body, so the collector verifies before
it trusts anything it parsed, and the agent signs the bytes it is about to send.
"""

import base64
import binascii
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol import ProtocolError
from protocol.ed25519 import SMALL_ORDER_ENCODINGS, InvalidKey, check_public_key, check_signature
from protocol.times import format_timestamp, parse_timestamp
from protocol.wallets import normalize_wallet

SIGNATURE_HEADER = "X-Tassium-Signature"
MAX_CONTAINERS = 1000
MAX_TEXT = 255


@dataclass(frozen=True)
class Container:
    containerName: str  # noqa: N815 - the plan's wire names are kept as field names
    port: str = ""
    id: str | None = None
    image: str | None = None
    state: str | None = None
    health: str | None = None


@dataclass(frozen=True)
class AgentInfo:
    version: str | None = None
    hostname: str | None = None
    dockerAvailable: bool = True  # noqa: N815


@dataclass(frozen=True)
class Heartbeat:
    wallet: str
    timestamp: datetime
    containers: tuple[Container, ...] = ()
    agent: AgentInfo | None = field(default=None)

    def to_body(self) -> bytes:
        """The JSON body the agent sends (and signs)."""
        body: dict = {
            "walletAddress": self.wallet,
            "timestamp": format_timestamp(self.timestamp),
            "containers": [
                {k: v for k, v in asdict(c).items() if v is not None} for c in self.containers
            ],
        }
        if self.agent is not None:
            body["agent"] = {k: v for k, v in asdict(self.agent).items() if v is not None}
        return json.dumps(body, separators=(",", ":")).encode("utf-8")


def parse_wallet_field(document: dict, wallet_format: str) -> str:
    return normalize_wallet(document.get("walletAddress"), wallet_format)


def parse_heartbeat(document: object, wallet_format: str = "evm") -> Heartbeat:
    """Validate a decoded heartbeat body. Unknown fields are ignored so that agents and
    collectors of neighbouring versions keep talking; known ones must have the right shape."""
    if not isinstance(document, dict):
        raise ProtocolError("heartbeat body must be a JSON object")
    wallet = parse_wallet_field(document, wallet_format)
    timestamp = parse_timestamp(document.get("timestamp"))
    raw_containers = document.get("containers", [])
    if not isinstance(raw_containers, list):
        raise ProtocolError("containers must be a list")
    if len(raw_containers) > MAX_CONTAINERS:
        raise ProtocolError(f"containers may list at most {MAX_CONTAINERS} entries")
    containers = tuple(_container(c, i) for i, c in enumerate(raw_containers))
    agent = _agent(document["agent"]) if document.get("agent") is not None else None
    return Heartbeat(wallet, timestamp, containers, agent)


def _text(value: object, where: str, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"{where} must be a string")
    if required and not value:
        raise ProtocolError(f"{where} must not be empty")
    if len(value) > MAX_TEXT or not value.isprintable():
        raise ProtocolError(f"{where} must be printable text of at most {MAX_TEXT} characters")
    return value


def _container(raw: object, index: int) -> Container:
    where = f"containers[{index}]"
    if not isinstance(raw, dict):
        raise ProtocolError(f"{where} must be an object")
    return Container(
        containerName=_text(raw.get("containerName"), f"{where}.containerName", required=True),
        port=_text(raw.get("port", ""), f"{where}.port") or "",
        **{
            name: _text(raw.get(name), f"{where}.{name}")
            for name in ("id", "image", "state", "health")
        },
    )


def _agent(raw: object) -> AgentInfo:
    if not isinstance(raw, dict):
        raise ProtocolError("agent must be an object")
    docker = raw.get("dockerAvailable", True)
    if not isinstance(docker, bool):
        raise ProtocolError("agent.dockerAvailable must be true or false")
    return AgentInfo(
        version=_text(raw.get("version"), "agent.version"),
        hostname=_text(raw.get("hostname"), "agent.hostname"),
        dockerAvailable=docker,
    )


# --- signatures -------------------------------------------------------------------------


def _b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ProtocolError(f"{what} is not valid base64") from None


def load_public_key(value: object, *, enrolling: bool = False) -> Ed25519PublicKey:
    """A public key as the wire carries it: the raw 32 bytes, base64. ``enrolling`` checks
    the point fully (canonical, not small-order, prime-order subgroup); otherwise only the
    cheap small-order blocklist, for keys already stored."""
    if not isinstance(value, str):
        raise ProtocolError("publicKey must be a base64 string")
    raw = _b64decode(value, "publicKey")
    if len(raw) != 32:
        raise ProtocolError("publicKey must be a 32-byte Ed25519 key, base64-encoded")
    try:
        if enrolling:
            check_public_key(raw)
        elif raw in SMALL_ORDER_ENCODINGS:
            raise InvalidKey("publicKey is a small-order point: anyone could sign for it")
    except InvalidKey as exc:
        raise ProtocolError(str(exc)) from None
    return Ed25519PublicKey.from_public_bytes(raw)


def encode_public_key(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return base64.b64encode(public.public_bytes_raw()).decode("ascii")


def sign(private_key: Ed25519PrivateKey, body: bytes) -> str:
    """The value of the signature header for these exact body bytes."""
    return base64.b64encode(private_key.sign(body)).decode("ascii")


def verify(public_key: str, body: bytes, signature: str | None) -> None:
    """Raise ProtocolError unless ``signature`` is the key's signature of ``body``."""
    if not signature:
        raise ProtocolError(f"missing {SIGNATURE_HEADER} header")
    raw = _b64decode(signature.strip(), SIGNATURE_HEADER)
    key = load_public_key(public_key)
    try:
        check_signature(raw)
        key.verify(raw, body)
    except InvalidKey as exc:
        raise ProtocolError(str(exc)) from None
    except InvalidSignature:
        raise ProtocolError("signature does not match the enrolled key") from None
