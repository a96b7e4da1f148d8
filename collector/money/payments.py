"""Payments: what the UI records as paid to whom, amounts as uint256 decimal strings."""

import re
from typing import Annotated

from flask import Blueprint, Response
from msgspec import Meta

from collector.errors import ApiError
from collector.identity.access import require_operator
from collector.store import models
from collector.web.api import by_creator, paginated, wallet
from collector.web.schema import (
    PAGE,
    Answer,
    Body,
    Page,
    Reply,
    Timestamp,
    Wallet,
    answer,
    decode,
    operation,
    path_parameter,
    query,
    refusal,
    wallet_ref,
    whole_match,
)
from protocol.times import format_timestamp

bp = Blueprint("payments", __name__, url_prefix="/payments")

UINT256_MAX = 2**256 - 1
_AMOUNT = re.compile(r"0|[1-9][0-9]{0,77}")
_AMOUNT_RULE = "{where} must be a decimal string of a whole number from 0 to 2**256-1"
# Ids are PostgreSQL serials, so no row has a larger one; and SQLite's driver cannot even
# send a number beyond 64 bits (OverflowError, a 500).
MAX_ID = 2**31 - 1
_NAME_RULE = "{where} must be printable text of 1 to 255 characters"

# A uint256 as a decimal string: JSON numbers lose precision long before 2**256 in the UI's
# JavaScript. The pattern says its digits; parse_amount also its bound.
Amount = Annotated[
    str,
    Meta(
        pattern=whole_match(_AMOUNT),
        description="A uint256 as a decimal string (at most 2**256-1)",
        extra=refusal(_AMOUNT_RULE),
    ),
]


class NewPayment(Body):
    """Unknown fields are refused (400)."""

    name: Annotated[str, Meta(min_length=1, max_length=255, extra=refusal(_NAME_RULE))]
    amount: Amount
    creator: Wallet


class Payment(Answer, rename="camel"):
    id: int
    name: str
    amount: Amount
    creator: Wallet
    created_at: Timestamp
    payout_id: Annotated[int | None, Meta(description="the payout it is a share of")]
    tx_hash: str | None


class PaymentPage(Page[Payment]):
    pass


# Money: every route is the operator's, and reads the database; a write also reads a body.
_ERRORS = (503,)  # and the operator's 401 and 403 (collector/pages/openapi.py)
_WRITE_ERRORS = (400, 408, 413, *_ERRORS)


def to_answer(payment: models.Payment) -> Payment:
    return Payment(
        id=payment.id,
        name=payment.name,
        amount=payment.amount,
        creator=payment.creator,
        created_at=format_timestamp(payment.created_at),
        payout_id=payment.payout_id,
        tx_hash=payment.tx_hash,
    )


def parse_amount(value: object, field: str = "amount") -> str:
    """A uint256 as a decimal string (payments, payout budgets), or a 400."""
    if not isinstance(value, str) or not _AMOUNT.fullmatch(value) or int(value) > UINT256_MAX:
        raise ApiError(400, _AMOUNT_RULE.format(where=field))
    return value


def _name(value: str) -> str:
    """What a length cannot say: a name shows as text."""
    if not value.strip() or not value.isprintable():
        raise ApiError(400, _NAME_RULE.format(where="name"))
    return value


@bp.post("")
@operation(
    summary="Record a payment",
    body=NewPayment,
    replies={201: Reply("Recorded", Payment)},
    errors=_WRITE_ERRORS,
)
@require_operator
def create() -> Response:
    body = decode(NewPayment)
    payment = models.Payment.create(
        name=_name(body.name),
        amount=parse_amount(body.amount),
        creator=wallet(body.creator, "creator"),
    )
    return answer(to_answer(models.Payment.get_by_id(payment.id)), 201)


@bp.get("")
@operation(
    summary="Payments, newest first",
    parameters=(
        query("creator", wallet_ref(), "only this creator's entries"),
        *PAGE,
    ),
    replies={200: Reply("A page", PaymentPage)},
    errors=(400, *_ERRORS),
)
@require_operator
def list_payments() -> Response:
    newest = models.Payment.select().order_by(
        models.Payment.created_at.desc(), models.Payment.id.desc()
    )
    return answer(PaymentPage(**paginated(by_creator(newest, models.Payment.creator), to_answer)))


@bp.get("/<int:payment_id>")
@operation(
    summary="One payment",
    parameters=(path_parameter("payment_id", {"type": "integer", "minimum": 0}),),
    replies={200: Reply("The payment", Payment)},
    errors=(404, *_ERRORS),
)
@require_operator
def get(payment_id: int) -> Response:
    payment = (
        models.Payment.get_or_none(models.Payment.id == payment_id)
        if payment_id <= MAX_ID
        else None
    )
    if payment is None:
        raise ApiError(404, f"no payment with id {payment_id}")
    return answer(to_answer(payment))
