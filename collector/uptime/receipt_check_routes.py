"""``POST /receipts/verify``: anyone checks a receipt file against the collector's published
keys and its records, as ``tassium-collector verify-receipts`` does (the check is
collector/uptime/receipt_checks.py's; this module declares and answers it). Public, like
the well-known document it checks against; a POST, so rate-limited per client address like
every public write (collector/web/ratelimits.py)."""

from datetime import timedelta
from typing import Annotated, Literal

import msgspec
from flask import Blueprint, Response, request
from msgspec import Meta

from collector.errors import ApiError
from collector.identity.collector_key import KeyId
from collector.uptime.receipt_checks import (
    PRECISION,
    RECEIPTS_LACK,
    RECORDS_LACK,
    Unreadable,
    Verdict,
    check,
    period_for,
    read,
)
from collector.uptime.receipts import SignedReceipt
from collector.web.api import settings
from collector.web.schema import Answer, Reply, Timestamp, Wallet, answer, operation, query
from protocol.periods import Period
from protocol.receipt_files import FILE_TYPE, FILE_VERSION
from protocol.times import format_timestamp, utcnow

Seconds = Annotated[float, Meta(ge=0, description="seconds, to the millisecond")]


class ReceiptFileBody(msgspec.Struct, kw_only=True):
    """A receipt file, as an agent writes it (protocol/receipt_files.py). Declared here for
    the document; the protocol's own reader reads it, as the command does, so that both
    refuse a file alike."""

    type: Annotated[str, Meta(extra_json_schema={"const": FILE_TYPE})]
    v: Annotated[int, Meta(extra_json_schema={"const": FILE_VERSION})]
    walletAddress: Wallet  # noqa: N815 - the wire's names
    collector: Annotated[
        str | None, Meta(description="the collector's URL the receipts came from")
    ] = None
    period: Annotated[
        str | None,
        Meta(description="the period the file was written for (24h, 7d, 30d, 2026-11, FROM/TO)"),
    ] = None
    receipts: list[SignedReceipt]


class CheckedPeriod(Answer):
    label: str
    start: Timestamp = msgspec.field(name="from")
    end: Timestamp = msgspec.field(name="to")


class RefusedReceipt(Answer):
    receipt: Annotated[int, Meta(ge=1, description="its place in the file, from 1")]
    reason: str


class DisagreeingHour(Answer):
    hour: Annotated[Timestamp, Meta(description="the UTC hour's start")]
    provenSeconds: Seconds  # noqa: N815
    recordedSeconds: Seconds  # noqa: N815
    meaning: Literal[RECORDS_LACK, RECEIPTS_LACK]


class ReceiptCheck(Answer):
    walletAddress: Wallet  # noqa: N815
    period: Annotated[
        CheckedPeriod | None,
        Meta(
            description="what was compared: the period asked for, else the file's, else the "
            "whole UTC hours the valid receipts span; null when none of these is given"
        ),
    ]
    receipts: Annotated[int, Meta(ge=0, description="how many the file holds")]
    valid: Annotated[int, Meta(ge=0)]
    refused: list[RefusedReceipt]
    keys: Annotated[list[KeyId], Meta(description="the keys the valid receipts were signed with")]
    workerKnown: Annotated[  # noqa: N815
        bool,
        Meta(description="false: the collector has no such worker, and its records show nothing"),
    ]
    provenSeconds: Annotated[Seconds, Meta(description="the uptime the valid receipts prove")]  # noqa: N815
    recordedSeconds: Annotated[  # noqa: N815
        Seconds, Meta(description="the uptime the collector's records show")
    ]
    hours: Annotated[
        list[DisagreeingHour], Meta(description=f"every hour that disagrees: {PRECISION}")
    ]
    ok: Annotated[
        bool,
        Meta(description="every receipt is valid and every hour agrees (the command's exit 0)"),
    ]


def answered(verdict: Verdict) -> ReceiptCheck:
    """The check as the route answers it (and ``verify-receipts --json`` prints it)."""
    period = verdict.period
    return ReceiptCheck(
        walletAddress=verdict.wallet,
        period=None
        if period is None
        else CheckedPeriod(
            label=period.label,
            start=format_timestamp(period.start),
            end=format_timestamp(period.end),
        ),
        receipts=verdict.receipts,
        valid=verdict.receipts - len(verdict.refused),
        refused=[RefusedReceipt(receipt=n, reason=why) for n, why in verdict.refused],
        keys=verdict.keys,
        workerKnown=verdict.worker_known,
        provenSeconds=_seconds(verdict.proven),
        recordedSeconds=_seconds(verdict.recorded),
        hours=[
            DisagreeingHour(
                hour=format_timestamp(h.start),
                provenSeconds=_seconds(h.proven),
                recordedSeconds=_seconds(h.recorded),
                meaning=h.meaning,
            )
            for h in verdict.hours
        ],
        ok=verdict.ok,
    )


def _seconds(value: timedelta) -> float:
    return round(value.total_seconds(), 3)


bp = Blueprint("receipt_checks", __name__)

_PERIOD = query(
    "period",
    {"type": "string"},
    "24h, 7d, 30d, a UTC month like 2026-11, or an interval like "
    "2026-11-01T00:00:00Z/2026-11-15T00:00:00Z; by default the file's period, else the whole "
    "UTC hours its receipts span",
)


@bp.post("/receipts/verify")
@operation(
    summary="Check a receipt file against the collector's keys and its records",
    description="For anyone: an owner disputing a payout, an auditor checking one. Every "
    "receipt must verify with the key its `keyId` names at "
    "/.well-known/tassium-collector.json, valid at its `collectorTime`, and be for the "
    "file's wallet; each refused one is named with the reason. The uptime the valid receipts "
    "prove is compared hour by hour with the collector's records of that wallet, and every "
    f"hour that differs is listed with both figures: {PRECISION}. Nothing is changed. The "
    "body is bounded by `max_body_bytes`: check a larger file with `tassium-collector "
    "verify-receipts FILE` on the collector's host, which answers the same.",
    body=ReceiptFileBody,
    parameters=(_PERIOD,),
    replies={200: Reply("The check; `ok` says whether it passed", ReceiptCheck)},
    errors=(400, 408, 413, 503),  # and a 429 (collector/pages/openapi.py)
)
def verify_receipts() -> Response:
    now = utcnow()
    asked = request.args.get("period")
    try:
        period = None if asked is None else Period.parse(asked, now)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    try:
        file = read(request.get_data(cache=True), settings().wallet_format)
        period = period_for(file, period, now)
    except Unreadable as exc:
        raise ApiError(400, str(exc)) from None
    return answer(answered(check(file, period)))
