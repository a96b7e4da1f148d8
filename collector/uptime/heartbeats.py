"""Heartbeats: ``POST /heartbeat`` for one, ``POST /heartbeats`` for an agent replaying its
backlog, ``POST /heartbeat/ping`` for the light ping between them. The first two hand their
heartbeats to ``receive_all()``: parse, verify, check the clock, then the windows, in the
transactions of the process's group commit (a batch in as few as it can). Every answer
carries ``serverTime``, so an agent with a wrong clock learns the collector's from any answer,
a refusal included."""

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from flask import Blueprint, Flask, Response, current_app, request
from msgspec import UNSET, Meta, UnsetType

from collector import counters
from collector.config import CollectorConfig
from collector.errors import ApiError
from collector.identity.collector_key import EXTENSION
from collector.identity.signatures import load_public_key, verify
from collector.store.db import DATABASE_DOWN
from collector.store.models import Worker, credits
from collector.uptime import heartbeat_body
from collector.uptime.commits import GroupCommit
from collector.uptime.keys import PING_MAX_AGE, CachedKey, enrolled_key
from collector.uptime.receipts import ReceiptSigner, SignedReceipt
from collector.uptime.vouching import Vouching
from collector.uptime.windows import (
    Action,
    Applied,
    KeyReplaced,
    StaleHeartbeat,
    TooSoon,
    UnknownWorker,
    Window,
    apply_heartbeats,
)
from collector.web import schema, telemetry
from collector.web.api import settings, wallet
from collector.web.schema import (
    REF_TEMPLATE,
    Answer,
    Body,
    Parameter,
    Reply,
    Timestamp,
    decode,
    millis_time,
    operation,
    refusal,
)
from collector.web.steps import Call, Step, without_flask
from protocol import ProtocolError
from protocol.heartbeat import SIGNATURE_HEADER, Heartbeat
from protocol.times import format_millis, format_timestamp, utcnow

bp = Blueprint("heartbeats", __name__)

# Heartbeats in one batch: a few hundred carry a long outage's backlog in a few requests,
# while a request stays well under a second of work.
MAX_BATCH = 500


# --- the answers ---------------------------------------------------------------------------

ServerTime = millis_time("The collector's clock as it answered: RFC 3339 UTC, in milliseconds")


def _server_time() -> str:
    return format_millis(utcnow())


# Always true. (Literal[True] needs msgspec 0.22; pyproject allows 0.18.)
AlwaysTrue = Annotated[bool, Meta(extra_json_schema={"const": True})]


class Accepted(Answer, kw_only=True):
    accepted: AlwaysTrue
    action: Action
    credited: Annotated[
        bool,
        Meta(
            description="false for a heartbeat stored as evidence only: late, at a time the "
            "collector was taking heartbeats, or stamped before the worker enrolled"
        ),
    ]
    openWindow: Annotated[  # noqa: N815 - the API's names
        Window | None,
        Meta(description="null while the agent reports Docker unavailable (not uptime)"),
    ]
    containers: Annotated[int, Meta(ge=0)]
    creditsEarned: Annotated[  # noqa: N815
        float,
        Meta(
            ge=0,
            description="What the uptime this heartbeat counted earned (0 when it opened or "
            "restarted a window), exact to the thousandth (a whole number when whole)",
        ),
    ]
    receipt: (
        Annotated[
            SignedReceipt,
            Meta(
                description="The collector's signed receipt for this heartbeat: on every "
                "credited heartbeat that moved a window (none while credited is false or "
                "openWindow is null)"
            ),
        ]
        | UnsetType
    ) = UNSET


class Refused(Answer, kw_only=True):
    error: str
    retryAfter: (  # noqa: N815
        Annotated[
            int,
            Meta(
                ge=1,
                description="With a 429: seconds until this wallet's next heartbeat may be stored",
            ),
        ]
        | UnsetType
    ) = UNSET


class Stale(Answer):
    """A heartbeat not later than the worker's last accepted one."""

    error: str
    stored: Annotated[
        bool,
        Meta(
            description="true: its time is already counted (a duplicate, or inside a window); "
            "false: it arrived out of order and can never be"
        ),
    ]
    lastAccepted: Timestamp  # noqa: N815


# What POST /heartbeat answers: the same, with the collector's clock.
class HeartbeatAccepted(Accepted, kw_only=True):
    serverTime: ServerTime  # noqa: N815


class HeartbeatRefused(Refused, kw_only=True):
    serverTime: ServerTime  # noqa: N815


class HeartbeatStale(Stale, kw_only=True):
    serverTime: ServerTime  # noqa: N815


class PingAccepted(Answer, kw_only=True):
    accepted: AlwaysTrue
    lastPing: Timestamp  # noqa: N815
    serverTime: ServerTime  # noqa: N815


# One heartbeat's result in a batch: its answer with its status.
class AcceptedResult(Accepted, kw_only=True):
    status: Literal[200]


class StaleResult(Stale, kw_only=True):
    status: Literal[409]


class RefusedResult(Refused, kw_only=True):
    status: Annotated[int, Meta(ge=400, extra_json_schema={"not": {"const": 409}})]


RESULTS = (AcceptedResult, StaleResult, RefusedResult)


class HeartbeatResults(Answer):
    results: Annotated[
        list[
            Annotated[
                dict[str, Any],
                Meta(
                    extra_json_schema={
                        "oneOf": [{"$ref": REF_TEMPLATE.format(name=k.__name__)} for k in RESULTS]
                    }
                ),
            ]
        ],
        Meta(
            description="One per heartbeat, in order: what POST /heartbeat would answer, with "
            "its status"
        ),
    ]
    serverTime: ServerTime  # noqa: N815


SIGNED = Parameter(
    SIGNATURE_HEADER,
    "header",
    {"type": "string", "pattern": "^[A-Za-z0-9+/]{86}==$"},
    "The Ed25519 signature of the exact request body, base64",
)


def init_app(app: Flask, config: CollectorConfig) -> None:
    """The process's group commit (collector/uptime/commits.py): heartbeats that arrive together
    are applied in one transaction."""

    receipts = ReceiptSigner(app.extensions[EXTENSION]) if config.receipts else None
    vouching = Vouching(
        max_skew=timedelta(seconds=config.max_skew),
        liveness_interval=timedelta(seconds=config.liveness_interval),
    )

    def apply(items: list) -> list:
        recorded = receipts.recorded if receipts else True
        try:
            applied = apply_heartbeats(
                items,
                gap=timedelta(seconds=config.gap),
                now=utcnow(),
                create_worker=not config.require_signatures,
                vouching=vouching,
                min_interval=timedelta(seconds=config.min_interval),
                capacity_bounds=config,
                receipts=receipts,
            )
        except BaseException:
            if receipts:
                receipts.recorded = recorded  # its record of the key was rolled back too
            raise
        counters.HEARTBEAT_TRANSACTIONS.inc()
        return applied

    app.extensions["tassium.commits"] = GroupCommit(apply, wait=config.group_commit_wait_ms / 1000)


def receive(body: bytes, signature: str | None, config: CollectorConfig) -> tuple[int, dict]:
    """One heartbeat: its status and its JSON answer (see receive_all)."""
    [answered] = receive_all([(body, signature)], config)
    return answered


def receive_all(
    entries: list[tuple[bytes, str | None]], config: CollectorConfig
) -> list[tuple[int, dict]]:
    """Heartbeats (bodies and signatures), as both routes take them: each one's status and
    JSON answer, in order. Those that pass the checks are applied together, in the groups
    of collector/uptime/commits.py, a batch in as few transactions as a group's limit allows; a
    refusal writes nothing. Each is counted at /metrics. A database failure fails them all
    (answered 503 by collector/web/api.py): none is acknowledged."""
    try:
        answers = _answers(entries, config)
    except DATABASE_DOWN:
        for _, signature in entries:
            telemetry.heartbeat_answered(503, {}, signed=bool(signature))
        raise
    for (status, answer), (_, signature) in zip(answers, entries, strict=True):
        telemetry.heartbeat_answered(status, answer, signed=bool(signature))
    return answers


def _answers(entries: list[tuple[bytes, str | None]], config: CollectorConfig) -> list:
    answers: list[tuple[int, dict]] = [(0, {})] * len(entries)
    ready = []
    for index, (body, signature) in enumerate(entries):
        try:
            ready.append((index, *_checked(body, signature, config)))
        except ApiError as exc:
            answers[index] = (exc.status, exc.answer())
    commits = current_app.extensions["tassium.commits"]
    outcomes = commits.submit_many([(beat, key) for _, beat, key in ready])
    for (index, beat, _), outcome in zip(ready, outcomes, strict=True):
        body, signature = entries[index]
        try:
            if isinstance(outcome, KeyReplaced):
                outcome = _with_enrolled_key(beat, body, signature, config)
            answers[index] = (200, _answer(beat, outcome))
        except ApiError as exc:
            answers[index] = (exc.status, exc.answer())
    return answers


def _authenticate(
    address: str,
    body: bytes,
    signature: str | None,
    config: CollectorConfig,
    max_age: float | None = None,
) -> str | None:
    """The body must carry the enrolled key's signature: always with signatures required,
    and, with them off, for every wallet that has a key, so that nothing unsigned ever
    changes a signed worker. Returns the key it was verified with (read from this process's
    cache when it can be), None for an unsigned body of a wallet without a key (whose
    transaction checks that the worker still has none: collector/uptime/windows.py)."""
    if not config.require_signatures and not signature:
        if enrolled_key(address) is None:
            return None
        raise ApiError(
            401,
            f"wallet {address} has an enrolled key: everything sent for it must be signed by "
            f"that key (missing {SIGNATURE_HEADER} header)",
        )
    if not signature:
        raise ApiError(
            401,
            f"heartbeat must be signed: missing {SIGNATURE_HEADER} header "
            "(in a batch, the entry's signature)",
        )
    keys = current_app.extensions["tassium.keys"]
    cached = keys.get(address, max_age=max_age)
    if cached is not None:
        try:
            verify(cached.public_key, body, signature)
            return cached.text
        except ProtocolError:
            keys.forget(address)  # the key may have been replaced: ask the database
    key = enrolled_key(address)
    if key is None:
        if not config.require_signatures:
            return None  # a signature nobody enrolled a key for is no signature
        raise ApiError(404, f"worker {address} is not enrolled")
    try:
        public_key = load_public_key(key)
        verify(public_key, body, signature)
    except ProtocolError as exc:
        raise ApiError(401, str(exc)) from None
    keys.put(address, CachedKey(key, public_key))
    return key


def _check_time(timestamp: datetime, now: datetime, back: int, ahead: int) -> None:
    earliest = now - timedelta(seconds=back)
    latest = now + timedelta(seconds=ahead)
    if not earliest <= timestamp <= latest:
        raise ApiError(
            422,
            f"timestamp {format_timestamp(timestamp)} is outside the accepted range "
            f"{format_timestamp(earliest)} to {format_timestamp(latest)}",
        )


T = TypeVar("T")


def _read(
    body: bytes,
    signature: str | None,
    config: CollectorConfig,
    parse: Callable[[bytes, str], T],
    max_age: float | None,
) -> tuple[T, str | None]:
    """A signed body (a heartbeat or a ping), authenticated (with a cached key at most
    ``max_age`` seconds old), then parsed by ``parse`` (collector/uptime/heartbeat_body.py);
    and the key that verified it. Only the wallet is read before the signature is checked."""
    address = wallet(heartbeat_body.signer(body), "walletAddress")
    key = _authenticate(address, body, signature, config, max_age)
    return parse(body, address), key


def _checked(
    body: bytes, signature: str | None, config: CollectorConfig
) -> tuple[Heartbeat, str | None]:
    """A heartbeat parsed, authenticated (with any cached key: its transaction checks the
    key against the worker row) and within the accepted time range; and its key."""
    beat, key = _read(body, signature, config, heartbeat_body.heartbeat, max_age=None)
    _check_time(beat.timestamp, utcnow(), config.max_backfill, config.max_skew)
    return beat, key


def _with_enrolled_key(
    beat: Heartbeat, body: bytes, signature: str | None, config: CollectorConfig
) -> Applied | Exception:
    """Verified with a cached key the worker no longer has: once more, from the table."""
    current_app.extensions["tassium.keys"].forget(beat.wallet)
    key = _authenticate(beat.wallet, body, signature, config)
    return current_app.extensions["tassium.commits"].submit_many([(beat, key)])[0]


def _answer(beat: Heartbeat, outcome: Applied | Exception) -> dict:
    """A heartbeat's answer from what applying it gave, with its receipt when it was
    credited (collector/uptime/receipts.py; as msgspec.Raw, which only msgspec encodes):
    raises the ApiError of a refusal, and any other exception as it came."""
    if isinstance(outcome, StaleHeartbeat):
        last = format_timestamp(outcome.last)
        why = (
            "its time is already stored (a duplicate or a replay)"
            if outcome.stored
            else "it arrived out of order, outside the worker's windows, and can never count"
        )
        raise ApiError(
            409,
            f"heartbeat not later than the last accepted one at {last}: {why}",
            stored=outcome.stored,
            lastAccepted=last,
        )
    if isinstance(outcome, UnknownWorker):
        raise ApiError(404, f"worker {beat.wallet} is not enrolled")
    if isinstance(outcome, TooSoon):
        wait = max(1, math.ceil((outcome.allowed_from - utcnow()).total_seconds()))
        raise ApiError(
            429,
            f"one heartbeat per {settings().min_interval} s is stored for {beat.wallet}: "
            f"this one follows the last by less; the next may be stamped from "
            f"{format_timestamp(outcome.allowed_from)} on",
            retryAfter=wait,
        )
    if isinstance(outcome, BaseException):
        raise outcome
    accepted = Accepted(
        accepted=True,
        action=outcome.action,
        # False for a heartbeat stored as evidence only (collector/uptime/vouching.py).
        credited=outcome.action != "not_credited",
        openWindow=Window.of(outcome.window),
        containers=len(beat.containers),
        creditsEarned=credits(outcome.credits_millis),
    )
    found = msgspec.to_builtins(accepted)
    if outcome.receipt is not None:
        found["receipt"] = msgspec.Raw(outcome.receipt)
    return found


def ping(body: bytes, signature: str | None, config: CollectorConfig) -> datetime:
    """Take a ping: signed like a heartbeat, recent (a ping is about now, so no backfill),
    and kept in memory until collector/uptime/pings.py writes it. Returns the time it counts
    from."""
    beat, _ = _read(body, signature, config, heartbeat_body.ping, max_age=PING_MAX_AGE)
    address = beat.wallet
    now = utcnow()
    _check_time(beat.timestamp, now, config.max_skew, config.max_skew)
    if (
        not config.require_signatures
        and Worker.get_or_none(Worker.wallet_address == address) is None
    ):
        raise ApiError(404, f"worker {address} has sent no heartbeat yet")
    # Never later than now: a clock running ahead must not keep a silent worker healthy.
    at = min(beat.timestamp, now)
    current_app.extensions["tassium.pings"].record(address, at)
    return at


TELLS_THE_TIME = "tassium_tells_the_time"


def tells_the_time(view: Callable) -> Callable:
    """Mark a route whose every JSON answer carries ``serverTime`` (``Clock``)."""
    setattr(view, TELLS_THE_TIME, True)
    return view


class Clock(Step):
    """``serverTime`` on every JSON answer of the routes that tell the time, whatever made
    it: the route itself, a body refused before it ran (400, 408, 413), a database outage
    (503). So an agent learns the collector's clock from any answer, a refusal included; it
    is read as the answer leaves, closest to when the agent receives it."""

    def after(self, call: Call, response: Response) -> Response:
        if not call.marked(TELLS_THE_TIME) or getattr(response, "server_time", False):
            return response  # not one of them, or stamped by the route (no reading it back)
        answer = response.get_json(silent=True) if response.is_json else None
        if isinstance(answer, dict):
            answer["serverTime"] = format_millis(utcnow())
            response.set_data(current_app.json.dumps(answer) + "\n")
        return response


@bp.post("/heartbeat")
@operation(
    summary="A worker's signed heartbeat: extends or opens its uptime window",
    parameters=(SIGNED,),
    body=heartbeat_body.SentHeartbeat,
    replies={200: Reply("Accepted", HeartbeatAccepted)},
    errors=(400, 408, 413, 503, 401, 404, 409, 422, 429),
    errors_named="Heartbeat",
)
@tells_the_time
@telemetry.carries_heartbeats
@without_flask
def heartbeat(call: Call) -> Response:
    """The request every worker sends: answered without a Flask request context
    (collector/web/pipeline.py)."""
    with current_app.extensions["tassium.commits"].arriving():
        status, answer = receive(call.body or b"", call.header(SIGNATURE_HEADER), settings())
    response = schema.answer({**answer, "serverTime": _server_time()}, status)
    response.headers.update(refusal_headers(answer))
    response.server_time = True
    return response


def refusal_headers(answer: dict) -> dict[str, str]:
    """A heartbeat's refusal as headers too: when to try again, for a 429."""
    return {"Retry-After": str(answer["retryAfter"])} if "retryAfter" in answer else {}


@bp.post("/heartbeat/ping")
@operation(
    summary="A worker's signed ping: moves its live status, nothing else",
    description="Kept in the serving process's memory and written every few seconds; other "
    "processes' status reads see it after that write.",
    parameters=(SIGNED,),
    body=heartbeat_body.SentPing,
    replies={200: Reply("Taken", PingAccepted)},
    errors=(400, 408, 413, 503, 401, 404, 422),
    errors_named="Heartbeat",
)
@tells_the_time
def ping_route():
    at = ping(request.get_data(cache=True), request.headers.get(SIGNATURE_HEADER), settings())
    response = schema.answer(
        PingAccepted(accepted=True, lastPing=format_timestamp(at), serverTime=_server_time())
    )
    response.server_time = True
    return response


class BatchEntry(Body):
    body: Annotated[
        str,
        Meta(
            description="The heartbeat's exact JSON text, as signed",
            extra=refusal("{where} must be the heartbeat's JSON as a string"),
        ),
    ]
    signature: Annotated[
        str | None,
        Meta(
            description="The Ed25519 signature of body's UTF-8 bytes",
            extra=refusal("{where} must be a base64 string"),
        ),
    ] = None


class HeartbeatBatch(Body):
    """Each entry is a heartbeat's exact body (as JSON text) and its signature."""

    heartbeats: Annotated[
        list[
            Annotated[
                BatchEntry, Meta(extra=refusal("{where} must be an object with body and signature"))
            ]
        ],
        Meta(
            min_length=1,
            max_length=MAX_BATCH,
            extra=refusal(f"heartbeats must be a list of 1 to {MAX_BATCH} heartbeats"),
        ),
    ]


@bp.post("/heartbeats")
@operation(
    summary="A batch of signed heartbeats, for an agent replaying its backlog",
    body=HeartbeatBatch,
    replies={200: Reply("One result per heartbeat, in order", HeartbeatResults)},
    errors=(400, 408, 413, 503),
    errors_named="Heartbeat",
)
@tells_the_time
@telemetry.carries_heartbeats
def heartbeats():
    """A batch, answered one result each, in order, with the status ``POST /heartbeat``
    would give, and applied together (up to 200 in one transaction). The whole envelope is
    checked before any heartbeat is applied: a malformed one changes nothing."""
    batch = decode(HeartbeatBatch)
    entries = [(entry.body.encode("utf-8"), entry.signature) for entry in batch.heartbeats]
    answered = receive_all(entries, settings())
    response = schema.answer(
        HeartbeatResults(
            results=[{"status": status, **found} for status, found in answered],
            serverTime=_server_time(),
        )
    )
    response.server_time = True
    return response
