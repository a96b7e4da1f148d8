"""``POST /heartbeat``: parse, verify, check the clock, then hand over to the windows."""

from datetime import timedelta

from flask import Blueprint, jsonify, request

from collector.api import ApiError, json_object, settings, wallet
from collector.models import Worker
from collector.windows import StaleHeartbeat, UnknownWorker, apply_heartbeat
from protocol import ProtocolError
from protocol.heartbeat import SIGNATURE_HEADER, parse_heartbeat, verify
from protocol.times import format_timestamp, utcnow

bp = Blueprint("heartbeats", __name__)


@bp.post("/heartbeat")
def heartbeat():
    config = settings()
    body = request.get_data(cache=True)
    document = json_object(body)
    address = wallet(document.get("walletAddress"), "walletAddress")

    if config.require_signatures:
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            raise ApiError(401, f"heartbeat must be signed: missing {SIGNATURE_HEADER} header")
        worker = Worker.get_or_none(Worker.wallet_address == address)
        if worker is None or not worker.public_key:
            raise ApiError(404, f"worker {address} is not enrolled")
        try:
            verify(worker.public_key, body, signature)
        except ProtocolError as exc:
            raise ApiError(401, str(exc)) from None

    try:
        beat = parse_heartbeat(document, config.wallet_format)
    except ProtocolError as exc:
        raise ApiError(400, str(exc)) from None

    now = utcnow()
    earliest = now - timedelta(seconds=config.max_backfill)
    latest = now + timedelta(seconds=config.max_skew)
    if not earliest <= beat.timestamp <= latest:
        raise ApiError(
            422,
            f"timestamp {format_timestamp(beat.timestamp)} is outside the accepted range "
            f"{format_timestamp(earliest)} to {format_timestamp(latest)}",
        )

    try:
        applied = apply_heartbeat(
            beat,
            gap=timedelta(seconds=config.gap),
            now=now,
            create_worker=not config.require_signatures,
        )
    except StaleHeartbeat as exc:
        raise ApiError(409, f"duplicate or replayed heartbeat: {exc}") from None
    except UnknownWorker:
        raise ApiError(404, f"worker {address} is not enrolled") from None
    return jsonify(
        accepted=True,
        action=applied.action,
        openWindow=applied.window.to_json(),
        containers=len(beat.containers),
    )
