"""The heartbeat body and its Ed25519 signature.

The signature covers the exact bytes of the request body, so the collector verifies before
it trusts anything it parsed (collector/identity/signatures.py), and the agent signs the bytes it is
about to send.

Large machines. A body over the collector's ``max_body_bytes`` (256 KiB by default) is
refused with a 413, and a refused heartbeat credits nothing: a machine running thousands of
containers would never be paid. So a heartbeat lists at most ``MAX_LISTED`` of the machine's
containers (``listed()``), running ones first, then by name, and no more than
``MAX_LISTED_BYTES`` of them as JSON; ``containerCount`` says how many the machine runs in
all. ``MAX_LISTED`` containers with every field at its longest (1,676 bytes of JSON each, the
6 texts at 255 characters) make 164 KiB, and the rest of a body is at most about 7 KiB:
a heartbeat stays under 200 KiB, whatever the machine runs, and is never refused for its
size. The collector validates the body (collector/uptime/heartbeat_body.py), the count among
it (no fewer than the list, at most MAX_CONTAINER_COUNT), stores and shows it; the credit
still counts the listed containers, at most ``capacity_max_containers``
(collector/uptime/credits.py), so what a worker says of itself never raises its pay past the
operator's bound. A collector that predates the count ignores
it, as it ignores every unknown field.
"""

import base64
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from protocol.times import format_timestamp

SIGNATURE_HEADER = "X-Tassium-Signature"
# What a collector accepts in one heartbeat's list (older agents sent every container).
MAX_CONTAINERS = 1000
# What an agent lists (see the module's docstring): the default capacity_max_containers, so
# that a machine's listed containers are all its credit counts by default.
MAX_LISTED = 100
# The listed containers' JSON at most: only text escaped as \uXXXX (up to 12 bytes a
# character) comes near it, and the body then still stays under 200 KiB.
MAX_LISTED_BYTES = 192 * 1024
# containerCount at most: far beyond any machine, small enough for an INTEGER column.
MAX_CONTAINER_COUNT = 1_000_000
MAX_TEXT = 255
# Bounds on reported machine facts: generous for any real machine, small enough that a
# credit computed from them stays an exact integer in a BIGINT.
MAX_CPU_CORES = 4096
MAX_GB = 1_000_000.0
MAX_CONTAINER_CPU_PERCENT = 100.0 * MAX_CPU_CORES
MAX_MEMORY_MB = MAX_GB * 1024


@dataclass(frozen=True)
class Container:
    containerName: str  # noqa: N815 - the plan's wire names are kept as field names
    port: str = ""
    id: str | None = None
    image: str | None = None
    state: str | None = None
    health: str | None = None
    # From the agent's own consecutive stats samples: the average over the last interval.
    cpuPercent: float | None = None  # noqa: N815
    memUsageMb: float | None = None  # noqa: N815


@dataclass(frozen=True)
class System:
    """The machine's facts as the worker client shows them; every one is optional."""

    cpuCores: int | None = None  # noqa: N815
    cpuUsagePercent: float | None = None  # noqa: N815 - of the whole machine, 0 to 100
    ramTotalGb: float | None = None  # noqa: N815
    ramUsedGb: float | None = None  # noqa: N815
    storageTotalGb: float | None = None  # noqa: N815 - of the Docker data root
    storageUsedGb: float | None = None  # noqa: N815


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
    system: System | None = None
    tailscale_ip: str | None = None
    # How many containers the machine runs, when the list may be only some of them.
    container_count: int | None = None
    # The SHA-256 (hex) of the exact body it was read from, where it was read from one: the
    # collector's receipt for it names that body (protocol/receipts.py).
    body_sha256: str | None = field(default=None, compare=False, repr=False)

    @property
    def container_total(self) -> int:
        """How many containers the machine runs: its count, or the list's length without."""
        return len(self.containers) if self.container_count is None else self.container_count

    def to_body(self) -> bytes:
        """The JSON body the agent sends (and signs)."""
        body: dict = {
            "walletAddress": self.wallet,
            "timestamp": format_timestamp(self.timestamp),
            "containers": [_present(c) for c in self.containers],
        }
        if self.agent is not None:
            body["agent"] = _present(self.agent)
        if self.system is not None:
            body["system"] = _present(self.system)
        if self.tailscale_ip is not None:
            body["tailscaleIp"] = self.tailscale_ip
        if self.container_count is not None:
            body["containerCount"] = self.container_count
        return _json(body)


def listed(containers: Iterable[Container]) -> tuple[Container, ...]:
    """The containers a heartbeat lists of all those a machine runs: running ones first,
    then by name (and id), so that the same machine lists the same ones tick after tick; at
    most MAX_LISTED of them, and no more than fit in MAX_LISTED_BYTES of JSON."""
    ordered = sorted(containers, key=lambda c: (c.state != "running", c.containerName, c.id or ""))
    chosen, size = [], 0
    for container in ordered[:MAX_LISTED]:
        size += len(_json(_present(container))) + 1  # and its comma
        if size > MAX_LISTED_BYTES:
            break
        chosen.append(container)
    return tuple(chosen)


def _json(value: object) -> bytes:
    # As to_body writes it, so that listed() measures what is sent.
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class Ping:
    """The light signed "still here" an agent sends between heartbeats: it moves the worker's
    live status and nothing else (no uptime, no credit)."""

    wallet: str
    timestamp: datetime

    def to_body(self) -> bytes:
        body = {"walletAddress": self.wallet, "timestamp": format_timestamp(self.timestamp)}
        return _json(body)


def _present(value: object) -> dict:
    return {k: v for k, v in asdict(value).items() if v is not None}


# --- signatures -------------------------------------------------------------------------


class PublicKey(Protocol):
    def public_bytes_raw(self) -> bytes: ...


@runtime_checkable
class SigningKey(Protocol):
    """An Ed25519 private key, as the agent holds it (``agent.keys.AgentKey``, pycryptodome)
    or as ``cryptography`` spells one (the collector's tests and tools): the same two methods,
    so the protocol needs neither library."""

    def sign(self, data: bytes) -> bytes: ...

    def public_key(self) -> PublicKey: ...


def encode_public_key(key: SigningKey | PublicKey) -> str:
    public = key.public_key() if isinstance(key, SigningKey) else key
    return base64.b64encode(public.public_bytes_raw()).decode("ascii")


def sign(private_key: SigningKey, body: bytes) -> str:
    """The value of the signature header for these exact body bytes."""
    return base64.b64encode(private_key.sign(body)).decode("ascii")
