"""Payments: what the UI records as paid to whom, amounts as uint256 decimal strings."""

import re

from flask import Blueprint, jsonify

from collector.errors import ApiError
from collector.identity.access import ensure_operator
from collector.store.models import Payment
from collector.web.api import (
    accept_fields,
    by_creator,
    json_object,
    paginated,
    wallet,
)
from protocol.times import format_timestamp

bp = Blueprint("payments", __name__, url_prefix="/payments")
# Money: every route is the operator's.
bp.before_request(ensure_operator)

UINT256_MAX = 2**256 - 1
_AMOUNT = re.compile(r"0|[1-9][0-9]{0,77}")
# Ids are PostgreSQL serials, so no row has a larger one; and SQLite's driver cannot even
# send a number beyond 64 bits (OverflowError, a 500).
MAX_ID = 2**31 - 1


def to_json(payment: Payment) -> dict:
    return {
        "id": payment.id,
        "name": payment.name,
        "amount": payment.amount,
        "creator": payment.creator,
        "createdAt": format_timestamp(payment.created_at),
        "payoutId": payment.payout_id,
        "txHash": payment.tx_hash,
    }


def parse_amount(value: object, field: str = "amount") -> str:
    """A uint256 as a decimal string (payments, payout budgets), or a 400."""
    # A string, because JSON numbers lose precision long before 2**256 in the UI's JavaScript.
    if not isinstance(value, str) or not _AMOUNT.fullmatch(value) or int(value) > UINT256_MAX:
        raise ApiError(
            400, f"{field} must be a decimal string of a whole number from 0 to 2**256-1"
        )
    return value


def _name(value: object) -> str:
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > 255
        or not value.isprintable()
    ):
        raise ApiError(400, "name must be printable text of 1 to 255 characters")
    return value


@bp.post("")
def create():
    fields = accept_fields(
        json_object(), {"name", "amount", "creator"}, required=("name", "amount", "creator")
    )
    payment = Payment.create(
        name=_name(fields["name"]),
        amount=parse_amount(fields["amount"]),
        creator=wallet(fields["creator"], "creator"),
    )
    return jsonify(to_json(Payment.get_by_id(payment.id))), 201


@bp.get("")
def list_payments():
    query = Payment.select().order_by(Payment.created_at.desc(), Payment.id.desc())
    query = by_creator(query, Payment.creator)
    return jsonify(paginated(query, to_json))


@bp.get("/<int:payment_id>")
def get(payment_id: int):
    payment = Payment.get_or_none(Payment.id == payment_id) if payment_id <= MAX_ID else None
    if payment is None:
        raise ApiError(404, f"no payment with id {payment_id}")
    return jsonify(to_json(payment))
