"""The bodies a worker signs and sends, ``POST /heartbeat``'s and ``POST /heartbeat/ping``'s,
declared once: the declaration decodes them (with a sentence naming the field a value is
wrong in) and documents them at /openapi.json. They decode into protocol/heartbeat.py's
dataclasses, which the agent builds its bodies from without msgspec (a few MB of the agent's
memory budget).

Unknown fields are ignored at every level, so that agents and collectors of neighbouring
versions keep talking; known ones must have the right shape. What a type cannot say is
checked after decoding, in ``heartbeat()``: printable text, the original bash agent's
``name`` and top-level ``hostname``, and ``containerCount`` against the list."""

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType
from msgspec.structs import asdict

from collector.errors import ApiError
from collector.web.schema import Body, Wallet, decode, refusal, whole_match
from protocol import ProtocolError
from protocol.heartbeat import (
    MAX_CONTAINER_COUNT,
    MAX_CONTAINER_CPU_PERCENT,
    MAX_CONTAINERS,
    MAX_CPU_CORES,
    MAX_GB,
    MAX_MEMORY_MB,
    MAX_TEXT,
    AgentInfo,
    Container,
    Heartbeat,
    Ping,
    System,
)
from protocol.receipts import heartbeat_sha256
from protocol.times import parse_timestamp

# A dotted-quad IPv4 address as Python's ipaddress reads it (no leading zeros).
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"

_STRING = "{where} must be a string"
_PRINTABLE = f"{{where}} must be printable text of at most {MAX_TEXT} characters"

Text = Annotated[str, Meta(max_length=MAX_TEXT, extra=refusal(_STRING, max_length=_PRINTABLE))]
Name = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_TEXT,
        extra=refusal(_STRING, min_length="{where} must not be empty", max_length=_PRINTABLE),
    ),
]
SentTime = Annotated[
    str,
    Meta(
        description="RFC 3339 with an offset",
        extra_json_schema={"format": "date-time"},
        extra=refusal("{where} must be an RFC 3339 time with an offset, like 2026-11-24T21:00:00Z"),
    ),
]


def _amount(high: float, description: str | None = None) -> Any:
    """A measurement from 0 to ``high``: a JSON number, never a boolean."""
    between = f"{{where}} must be from 0 to {high:g}"
    return Annotated[
        float,
        Meta(
            ge=0,
            le=high,
            description=description,
            extra=refusal("{where} must be a number", ge=between, le=between),
        ),
    ]


Gigabytes = _amount(MAX_GB)


class SentContainer(Body, forbid_unknown_fields=False):
    # The original bash agent's word for containerName is "name" (one of them is required:
    # containerName when both are sent).
    containerName: Name | UnsetType = UNSET  # noqa: N815 - the wire's names
    name: Annotated[Name, Meta(description="The same as containerName")] | UnsetType = UNSET
    port: Text | None = ""
    id: Text | None = None
    image: Text | None = None
    state: Text | None = None
    health: Text | None = None
    cpuPercent: (  # noqa: N815
        _amount(
            MAX_CONTAINER_CPU_PERCENT,
            "Average CPU use since the agent's previous sample (100 per core)",
        )
        | None
    ) = None
    memUsageMb: _amount(MAX_MEMORY_MB, "Memory in use, MB") | None = None  # noqa: N815


class SentSystem(Body, forbid_unknown_fields=False):
    """The machine, as the worker client shows it; every fact is optional. Credits are
    computed from cpuCores, cpuUsagePercent, ramTotalGb, storageTotalGb and the number of
    containers."""

    cpuCores: (  # noqa: N815
        Annotated[
            int,
            Meta(
                ge=1,
                le=MAX_CPU_CORES,
                extra=refusal(f"{{where}} must be a whole number from 1 to {MAX_CPU_CORES}"),
            ),
        ]
        | None
    ) = None
    cpuUsagePercent: _amount(100, "Of the whole machine") | None = None  # noqa: N815
    ramTotalGb: Gigabytes | None = None  # noqa: N815
    ramUsedGb: Gigabytes | None = None  # noqa: N815
    storageTotalGb: (  # noqa: N815
        Annotated[Gigabytes, Meta(description="Of the Docker data root")] | None
    ) = None
    storageUsedGb: Gigabytes | None = None  # noqa: N815


class SentAgent(Body, forbid_unknown_fields=False):
    version: Text | None = None
    hostname: Text | None = None
    dockerAvailable: Annotated[  # noqa: N815
        bool, Meta(extra=refusal("{where} must be true or false"))
    ] = True


def _object(kind: type, **schema: Any) -> Any:
    return Annotated[
        kind, Meta(extra_json_schema=schema, extra=refusal("{where} must be an object"))
    ]


class SentHeartbeat(Body, forbid_unknown_fields=False):
    """Unknown fields are ignored, so that agents of neighbouring versions keep working. The
    X-Tassium-Signature header signs these exact bytes."""

    walletAddress: Wallet  # noqa: N815
    timestamp: SentTime
    containers: Annotated[
        list[
            _object(
                SentContainer,
                anyOf=[{"required": ["containerName"]}, {"required": ["name"]}],
            )
        ],
        Meta(
            max_length=MAX_CONTAINERS,
            extra=refusal(
                "{where} must be a list",
                max_length=f"{{where}} may list at most {MAX_CONTAINERS} entries",
            ),
        ),
    ] = []
    containerCount: (  # noqa: N815
        Annotated[
            int,
            Meta(
                description="How many containers the machine runs, when it lists only some "
                "(at least as many as listed)",
                # Checked against the list after decoding, in a sentence naming both.
                extra_json_schema={"minimum": 0, "maximum": MAX_CONTAINER_COUNT},
                extra=refusal("{where} must be a whole number"),
            ),
        ]
        | None
    ) = None
    agent: _object(SentAgent) | None = None
    system: _object(SentSystem) | None = None
    tailscaleIp: (  # noqa: N815
        Annotated[
            str,
            Meta(
                description="The machine's Tailscale IPv4 address; empty or null without Tailscale",
                # As Python's ipaddress reads it: no leading zeros.
                pattern=whole_match(f"({IPV4})?"),
                extra=refusal("{where} must be an IPv4 address"),
            ),
        ]
        | None
    ) = None
    hostname: (
        Annotated[Text, Meta(description="The original bash agent's place for agent.hostname")]
        | None
    ) = None


class SentPing(Body, forbid_unknown_fields=False):
    """Unknown fields are ignored. The X-Tassium-Signature header signs these exact bytes; the
    timestamp must be within max_skew of the collector's clock."""

    walletAddress: Wallet  # noqa: N815
    timestamp: SentTime


class _Signer(Body, forbid_unknown_fields=False):
    # Only the wallet, whatever its type: read before the signature is checked, and the rest
    # of the body after. Its value is checked by the wallet format (collector/web/api.py).
    walletAddress: Any = None  # noqa: N815


_SIGNER = msgspec.json.Decoder(_Signer, strict=True)


def signer(raw: bytes) -> object:
    """The ``walletAddress`` of a signed body, as sent; a 400 for a body that is not a JSON
    object. Skipping the rest costs about a tenth of decoding it; what the rest holds (a NUL
    too) is refused by ``heartbeat()`` and ``ping()``, once the signature is checked."""
    try:
        return _SIGNER.decode(raw).walletAddress
    except msgspec.MsgspecError:
        return decode(_Signer, raw).walletAddress  # which says what is wrong


def heartbeat(raw: bytes, wallet: str) -> Heartbeat:
    """A heartbeat from its body, whose ``walletAddress`` is ``wallet`` (as stored), or a 400
    saying what is wrong with it."""
    sent = decode(SentHeartbeat, raw)
    containers = tuple(_container(c, i) for i, c in enumerate(sent.containers))
    return Heartbeat(
        wallet,
        _timestamp(sent.timestamp),
        containers,
        _agent(sent),
        None if sent.system is None else System(**asdict(sent.system)),
        # The original agent sends "" (or null) when Tailscale is not installed.
        sent.tailscaleIp or None,
        _container_count(sent.containerCount, len(containers)),
        heartbeat_sha256(raw),
    )


def ping(raw: bytes, wallet: str) -> Ping:
    """A ping from its body, whose ``walletAddress`` is ``wallet``, or a 400."""
    return Ping(wallet, _timestamp(decode(SentPing, raw).timestamp))


def _timestamp(value: str):
    try:
        return parse_timestamp(value)
    except ProtocolError as exc:
        raise ApiError(400, str(exc)) from None


def _agent(sent: SentHeartbeat) -> AgentInfo | None:
    agent = sent.agent
    if agent is not None:
        _printable(agent.version, "agent.version")
        _printable(agent.hostname, "agent.hostname")
    _printable(sent.hostname, "hostname")
    # The original bash agent sends the host name at the top level, beside no "agent".
    if sent.hostname and (agent is None or agent.hostname is None):
        return AgentInfo(
            version=agent.version if agent else None,
            hostname=sent.hostname,
            dockerAvailable=agent.dockerAvailable if agent else True,
        )
    return None if agent is None else AgentInfo(**asdict(agent))


_TEXTS = ("containerName", "name", "port", "id", "image", "state", "health")


def _container(sent: SentContainer, index: int) -> Container:
    name = sent.containerName
    if name is UNSET:
        name = sent.name
        if name is UNSET:
            raise ApiError(400, _STRING.format(where=f"containers[{index}].containerName"))
    port, id_, image, state, health = sent.port, sent.id, sent.image, sent.state, sent.health
    # One test for the usual container, whose every text is printable; the field when not.
    texts = name + (port or "") + (id_ or "") + (image or "") + (state or "") + (health or "")
    if not texts.isprintable():
        for field in _TEXTS:
            text = getattr(sent, field)
            _printable(text if isinstance(text, str) else None, f"containers[{index}].{field}")
    return Container(name, port or "", id_, image, state, health, sent.cpuPercent, sent.memUsageMb)


def _printable(value: str | None, where: str) -> None:
    if value is not None and not value.isprintable():
        raise ApiError(400, _PRINTABLE.format(where=where))


def _container_count(value: int | None, listed: int) -> int | None:
    if value is not None and not listed <= value <= MAX_CONTAINER_COUNT:
        raise ApiError(
            400,
            f"containerCount must be from the {listed} containers listed to {MAX_CONTAINER_COUNT}",
        )
    return value
