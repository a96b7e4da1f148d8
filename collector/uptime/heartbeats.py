"""Heartbeats: ``POST /heartbeat`` for one, ``POST /heartbeats`` for an agent replaying its
backlog, ``POST /heartbeat/ping`` for the light ping between them. The first two hand their
heartbeats to ``receive_all()``: parse, verify, check the clock, then the windows, in the
transactions of the process's group commit (a batch in as few as it can). Every answer
carries ``serverTime``, so an agent with a wrong clock learns the collector's from any answer,
a refusal included."""

import math
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Annotated

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from msgspec import Meta
from werkzeug.exceptions import InternalServerError

from collector import counters
from collector.config import CollectorConfig
from collector.errors import ApiError
from collector.identity.signatures import load_public_key, verify
from collector.store import db
from collector.store.db import DATABASE_DOWN
from collector.store.models import Worker, credits
from collector.uptime.commits import GroupCommit
from collector.uptime.keys import PING_MAX_AGE, CachedKey, enrolled_key
from collector.uptime.vouching import Vouching
from collector.uptime.windows import (
    Applied,
    KeyReplaced,
    StaleHeartbeat,
    TooSoon,
    UnknownWorker,
    apply_heartbeats,
)
from collector.web import api, telemetry
from collector.web.api import json_object, settings, wallet
from collector.web.bodies import BODY
from collector.web.schema import Body, Reply, decode, operation, refusal
from protocol import ProtocolError
from protocol.heartbeat import SIGNATURE_HEADER, Heartbeat, parse_heartbeat, parse_ping
from protocol.times import format_millis, format_timestamp, utcnow

bp = Blueprint("heartbeats", __name__)

# Heartbeats in one batch: a few hundred carry a long outage's backlog in a few requests,
# while a request stays well under a second of work.
MAX_BATCH = 500


def init_app(app: Flask, config: CollectorConfig) -> None:
    """The process's group commit (collector/uptime/commits.py): heartbeats that arrive together
    are applied in one transaction."""

    vouching = Vouching(
        max_skew=timedelta(seconds=config.max_skew),
        liveness_interval=timedelta(seconds=config.liveness_interval),
    )

    def apply(items: list) -> list:
        applied = apply_heartbeats(
            items,
            gap=timedelta(seconds=config.gap),
            now=utcnow(),
            create_worker=not config.require_signatures,
            vouching=vouching,
            min_interval=timedelta(seconds=config.min_interval),
            capacity_bounds=config,
        )
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


def _read(
    body: bytes, signature: str | None, config: CollectorConfig, parse, max_age: float | None
):
    """A signed body (a heartbeat or a ping), authenticated (with a cached key at most
    ``max_age`` seconds old), then parsed by ``parse``; and the key that verified it."""
    document = json_object(body)
    address = wallet(document.get("walletAddress"), "walletAddress")
    key = _authenticate(address, body, signature, config, max_age)
    try:
        return parse(document, config.wallet_format), key
    except ProtocolError as exc:
        raise ApiError(400, str(exc)) from None


def _checked(
    body: bytes, signature: str | None, config: CollectorConfig
) -> tuple[Heartbeat, str | None]:
    """A heartbeat parsed, authenticated (with any cached key: its transaction checks the
    key against the worker row) and within the accepted time range; and its key."""
    beat, key = _read(body, signature, config, parse_heartbeat, max_age=None)
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
    """A heartbeat's answer from what applying it gave: raises the ApiError of a refusal,
    and any other exception as it came."""
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
    return {
        "accepted": True,
        "action": outcome.action,
        # False for a heartbeat stored as evidence only (collector/uptime/vouching.py).
        "credited": outcome.action != "not_credited",
        "openWindow": outcome.window.to_json() if outcome.window else None,
        "containers": len(beat.containers),
        "creditsEarned": credits(outcome.credits_millis),
    }


def ping(body: bytes, signature: str | None, config: CollectorConfig) -> dict:
    """Take a ping: signed like a heartbeat, recent (a ping is about now, so no backfill),
    and kept in memory until collector/uptime/pings.py writes it."""
    beat, _ = _read(body, signature, config, parse_ping, max_age=PING_MAX_AGE)
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
    return {"accepted": True, "lastPing": format_timestamp(at)}


@bp.after_request
def stamp_server_time(response: Response) -> Response:
    """``serverTime`` on every JSON answer of these routes, whatever made it: the routes
    themselves, a body refused before they ran (400, 408, 413), a database outage (503). So
    an agent learns the collector's clock from any answer, a refusal included; it is read
    as the answer leaves, closest to when the agent receives it."""
    if getattr(response, "server_time", False):
        return response  # stamped by the route itself, which saves reading it back
    answer = response.get_json(silent=True) if response.is_json else None
    if isinstance(answer, dict):
        answer["serverTime"] = format_millis(utcnow())
        response.set_data(current_app.json.dumps(answer) + "\n")
    return response


@bp.post("/heartbeat")
@telemetry.carries_heartbeats
def heartbeat():
    # Served by HeartbeatLane; through Flask only where no lane is in front of it.
    return _heartbeat_answer(request.get_data(cache=True), request.headers.get(SIGNATURE_HEADER))


def _heartbeat_answer(body: bytes, signature: str | None) -> Response:
    with current_app.extensions["tassium.commits"].arriving():
        status, answer = receive(body, signature, settings())
    response = jsonify({**answer, "serverTime": format_millis(utcnow())})
    response.status_code = status
    response.headers.update(refusal_headers(answer))
    response.server_time = True
    return response


def refusal_headers(answer: dict) -> dict[str, str]:
    """A heartbeat's refusal as headers too: when to try again, for a 429."""
    return {"Retry-After": str(answer["retryAfter"])} if "retryAfter" in answer else {}


class HeartbeatLane:
    """WSGI middleware, inside collector/web/bodies.py's: ``POST /heartbeat``, the request every
    worker sends, answered without Flask's request machinery (a request context, routing,
    a dozen hooks), which cost a sixth of the collector's CPU at saturation. The answer is
    the route's own (``_heartbeat_answer``), and what the app's hooks would add is added by
    the functions they call: the request's timing, the database's state, CORS, a 503's
    ``serverTime``. A refused body, and every other request, go to Flask."""

    ROUTE = "/heartbeat"
    SIGNATURE = "HTTP_" + SIGNATURE_HEADER.upper().replace("-", "_")

    def __init__(self, app: Flask, flask_wsgi: Callable):
        self.app = app
        self.flask_wsgi = flask_wsgi

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if (
            environ.get("PATH_INFO") != self.ROUTE
            or environ.get("REQUEST_METHOD") != "POST"
            or BODY not in environ
        ):
            return self.flask_wsgi(environ, start_response)
        started = time.perf_counter()
        with self.app.app_context():
            try:
                response = self._answer(environ[BODY] or b"", environ.get(self.SIGNATURE))
                api.database_answered(response)
                api.cors(response, self.ROUTE, environ.get("HTTP_ORIGIN"))
            finally:
                db.release()
        telemetry.request_answered(self.ROUTE, "POST", response.status_code, started)
        return response(environ, start_response)

    def _answer(self, body: bytes, signature: str | None) -> Response:
        try:
            return _heartbeat_answer(body, signature)
        except DATABASE_DOWN as exc:
            return stamp_server_time(api.database_down(exc))
        except Exception:
            # What Flask does with an exception no handler takes: logged, answered 500.
            self.app.logger.exception(f"Exception on {self.ROUTE} [POST]")
            response = jsonify(error=InternalServerError.description)
            response.status_code = 500
            return stamp_server_time(response)


@bp.post("/heartbeat/ping")
def ping_route():
    body = request.get_data(cache=True)
    return jsonify(ping(body, request.headers.get(SIGNATURE_HEADER), settings()))


_NOT_AN_ENTRY = "{where} must be an object with body and signature"


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
    replies={
        200: Reply(
            "One result per heartbeat, in order",
            content={
                "application/json": {"schema": {"$ref": "#/components/schemas/HeartbeatResults"}}
            },
        )
    },
    errors=(400, 408, 413, 503),
    errors_named="Heartbeat",
)
@telemetry.carries_heartbeats
def heartbeats():
    """A batch, answered one result each, in order, with the status ``POST /heartbeat``
    would give, and applied together (up to 200 in one transaction). The whole envelope is
    checked before any heartbeat is applied: a malformed one changes nothing."""
    batch = decode(HeartbeatBatch)
    entries = [(entry.body.encode("utf-8"), entry.signature) for entry in batch.heartbeats]
    answered = receive_all(entries, settings())
    return jsonify(results=[{"status": status, **answer} for status, answer in answered])
