"""Payouts: a budget split over the workers in proportion to what they earned in a period.

The weights are each worker's counted uptime (in milliseconds, the default) or credits (in
thousandths) from the reports (collector/money/reports.py), whichever the operator chooses:
integers, as the exports keep them (people read them in seconds or credits,
collector/money/units.py). Uptime is what the collector observed itself; credits also rest on
the capacity each worker declared (bounded by the operator's settings,
collector/uptime/capacity.py). The split is exact, in integers: every worker first gets
``budget * weight // total``; what is left over (fewer units than there are workers) goes one
unit each to the workers with the largest remainders ``budget * weight % total``, ties to the
lower wallet address (Hamilton's method). So the shares sum to the budget and anyone holding
the inputs can recompute every share.

An export carries the SHA-256 of its inputs (the canonical JSON in ``inputs``) and of the
export itself (the CSV bytes). Recording a payout writes one ``payments`` row per share and
happens once per period: the same request again answers the recorded payout, a different
one for that period is a conflict, and so is a period overlapping one paid under another
label, so that no hour is paid twice. A recorded payout is never changed, except that the
transaction that paid it may be named once.
"""

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal

import msgspec
from flask import Blueprint, Response, request
from msgspec import Meta
from peewee import fn

from collector.config import CollectorConfig
from collector.errors import ApiError
from collector.identity.access import require_operator
from collector.money import receipt_trees, report_csv, reports, units
from collector.money.payments import Amount, parse_amount
from collector.money.receipt_trees import Tree
from collector.money.report_routes import PERIOD
from collector.money.reports import Count, Period, PeriodAnswer
from collector.store import models
from collector.store.db import database, is_postgres
from collector.web.api import DEFAULT_PAGE, page_bounds, paginated, settings
from collector.web.schema import (
    OPERATOR,
    PAGE,
    Answer,
    Body,
    Page,
    Parameter,
    Reply,
    Timestamp,
    Wallet,
    answer,
    decode,
    operation,
    path_parameter,
    refusal,
    whole_match,
)
from protocol.times import format_timestamp, utcnow

BASES = ("uptime", "credits")
# Uptime by default: the collector measured it itself, while credits also weigh the capacity
# each worker declared, which an operator should choose to trust.
DEFAULT_BASIS = "uptime"
EXPORT_COLUMNS = ("walletAddress", "weight", "amount", "receiptsRoot", "receiptCount")
# The shares a JSON export may hold (about 160 bytes each, twice: shares and inputs); past
# them it is the CSV, which holds every share.
MAX_JSON_SHARES = 1000
_TX_HASH = re.compile(r"(0x)?[0-9a-fA-F]{64}")
_TX_HASH_RULE = "must be 64 hex digits, with or without 0x"
_BASIS_RULE = "{where} must be " + " or ".join(BASES)

# --- the payouts as the routes take and answer them --------------------------------------

Basis = Annotated[
    Literal[BASES],
    Meta(
        description="what the shares weigh: counted uptime or credits",
        extra=refusal(_BASIS_RULE),
    ),
]
PeriodLabel = Annotated[
    str,
    Meta(
        description="as the reports take it, such as 2026-11",
        extra=refusal("{where} must be a string such as 2026-11"),
    ),
]
Sha256 = Annotated[str, Meta(pattern="^[0-9a-f]{64}$")]
# Integers, so that the split is exact and its inputs hash alike everywhere.
Weight = Annotated[
    int,
    Meta(
        ge=1,
        description="what the share weighs, in thousandths of the basis's unit: milliseconds "
        "of counted uptime (basis uptime) or thousandths of a credit (basis credits); "
        "81786 is 81.786 credits",
    ),
]
ReceiptsRoot = Annotated[
    Sha256,
    Meta(
        description="RFC 6962 Merkle root of the worker's receipts over the period, hex "
        "(GET /reports/workers/{wallet}/receipts lists them)"
    ),
]


class NewPayout(Body, rename="camel"):
    period: PeriodLabel
    budget: Amount
    basis: Basis = DEFAULT_BASIS
    tx_hash: (
        Annotated[
            str,
            Meta(pattern=whole_match(_TX_HASH), extra=refusal("{where} " + _TX_HASH_RULE)),
        ]
        | None
    ) = None


class Share(Answer, rename="camel"):
    wallet_address: Wallet
    weight: Weight
    amount: Amount
    receipts_root: ReceiptsRoot
    receipt_count: Count


class PayoutInputs(Answer):
    """What the split was computed from: its canonical JSON (sorted keys, no spaces) hashes
    to inputsSha256."""

    period: str
    start: Timestamp = msgspec.field(name="from")
    end: Timestamp = msgspec.field(name="to")
    basis: Basis
    budget: Amount
    weights: list[tuple[Wallet, Weight]]


class PayoutPlan(Answer, rename="camel"):
    period: PeriodAnswer
    basis: Basis
    budget: Amount
    shares: list[Share]
    inputs: PayoutInputs
    inputs_sha256: Sha256
    export_sha256: Annotated[Sha256, Meta(description="SHA-256 of the export's CSV bytes")]


class PayoutSummary(Answer, rename="camel"):
    """A payout without its payments (a list of payouts would hold every payment made)."""

    id: int
    period: PeriodLabel
    start: Timestamp = msgspec.field(name="from")
    end: Timestamp = msgspec.field(name="to")
    basis: Basis
    budget: Amount
    inputs_sha256: Sha256
    export_sha256: Sha256
    tx_hash: str | None
    created_at: Timestamp
    payment_count: Count


class PayoutPayment(Answer, rename="camel"):
    id: int
    wallet_address: Wallet
    amount: Amount
    receipts_root: ReceiptsRoot | None  # None: recorded before receipts
    receipt_count: Count | None


class Payout(PayoutSummary):
    payments: Annotated[
        list[PayoutPayment], Meta(description="a page of them by wallet (limit and offset)")
    ]


class PayoutPage(Page[PayoutSummary]):
    pass


def parse_tx_hash(value: object) -> str:
    """A transaction hash as stored: 64 hex digits, lower case, ``0x`` kept if given."""
    if not isinstance(value, str) or not _TX_HASH.fullmatch(value):
        raise ValueError(_TX_HASH_RULE)
    return value.lower()


@dataclass(frozen=True)
class Settling:
    """Why a period is not final as soon as it ends: heartbeats may arrive up to
    ``max_backfill`` late, and a window grows up to the ``gap`` past its last heartbeat."""

    backfill: timedelta
    gap: timedelta

    def final_at(self, period: Period) -> datetime:
        """From when the period's figures can no longer change."""
        return period.end + self.backfill + self.gap

    def refusal(self, period: Period) -> str:
        """The sentence refusing to record ``period``'s payout before it is final."""
        return (
            f"{period.label} is not final yet: it ends at {format_timestamp(period.end)}, "
            f"heartbeats may still arrive up to {units.duration(self.backfill)} late "
            f"(max_backfill) and a window grows up to {units.duration(self.gap)} (the gap) "
            f"past its last heartbeat, so its figures can change until "
            f"{format_timestamp(self.final_at(period))}: record its payout from then on"
        )


def settling(config: CollectorConfig) -> Settling:
    """How long after its end a period is final, and why."""
    return Settling(timedelta(seconds=config.max_backfill), timedelta(seconds=config.gap))


def split(budget: int, weights: list[tuple[str, int]]) -> list[int]:
    """Each wallet's share of ``budget``, in the order given; they sum to ``budget``."""
    total = sum(weight for _, weight in weights)
    if total <= 0:
        raise ValueError("nothing to split: no worker has a weight above 0")
    shares = [budget * weight // total for _, weight in weights]
    left = budget - sum(shares)
    # At most len(weights) - 1 units are left: one each to the largest remainders.
    order = sorted(
        range(len(weights)), key=lambda i: (-(budget * weights[i][1] % total), weights[i][0])
    )
    for i in order[:left]:
        shares[i] += 1
    return shares


@dataclass(frozen=True)
class Plan:
    period: Period
    basis: str
    budget: int
    weights: list[tuple[str, int]]  # wallets with a weight above 0, in wallet order
    amounts: list[int]
    trees: dict[str, Tree]  # each weighted wallet's receipts over the period

    @property
    def shares(self) -> list[tuple[str, int, int, str, int]]:
        """(wallet, weight, amount, receipts root, receipt count) for each worker with a
        weight."""
        return [
            (w, weight, amount, self.trees[w].root_hex, len(self.trees[w].receipts))
            for (w, weight), amount in zip(self.weights, self.amounts, strict=True)
        ]

    @property
    def inputs(self) -> PayoutInputs:
        return PayoutInputs(
            period=self.period.label,
            start=format_timestamp(self.period.start),
            end=format_timestamp(self.period.end),
            basis=self.basis,
            budget=str(self.budget),
            weights=self.weights,
        )

    @property
    def inputs_sha256(self) -> str:
        return _sha256(canonical_json(msgspec.to_builtins(self.inputs)))

    def csv(self) -> Iterator[str]:
        return report_csv.csv_lines(EXPORT_COLUMNS, self.shares)

    @property
    def export_sha256(self) -> str:
        return _sha256("".join(self.csv()))

    def answer(self) -> PayoutPlan:
        return PayoutPlan(
            period=PeriodAnswer.of(self.period),
            basis=self.basis,
            budget=str(self.budget),
            shares=[
                Share(
                    wallet_address=wallet,
                    weight=weight,
                    amount=str(amount),
                    receipts_root=root,
                    receipt_count=count,
                )
                for wallet, weight, amount, root, count in self.shares
            ],
            inputs=self.inputs,
            inputs_sha256=self.inputs_sha256,
            export_sha256=self.export_sha256,
        )


def canonical_json(document: object) -> str:
    """The one serialisation hashed: sorted keys, no spaces, ASCII."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def plan(
    period: Period,
    basis: str,
    budget: int,
    *,
    now: datetime,
    gap: timedelta,
    liveness_interval: timedelta,
) -> Plan:
    """The split of ``budget`` for ``period``; ValueError when nobody earned anything."""
    weights = []
    for report in reports.fleet(period, now=now, gap=gap, liveness_interval=liveness_interval):
        weight = report.credits_millis if basis == "credits" else report.uptime_millis
        if weight > 0:
            weights.append((report.wallet, weight))
    trees = receipt_trees.trees([w for w, _ in weights], period)
    return Plan(period, basis, budget, weights, split(budget, weights), trees)


def record(
    found: Plan, *, tx_hash: str | None, now: datetime, settling: Settling
) -> tuple[models.Payout, bool]:
    """Record the payout and its payments; ``(payout, created)``. The same plan recorded
    before answers that one; a different one for the period, or a period overlapping a payout
    recorded under another label, raises ValueError; a period not final yet PeriodOpen."""
    if settling.final_at(found.period) > now:
        raise PeriodOpen(settling.refusal(found.period))
    with database.atomic():
        _one_recorder_at_a_time()
        # The period's own payout first: asking again answers it even where payouts recorded
        # before periods had to be disjoint overlap it.
        existing = models.Payout.get_or_none(models.Payout.period == found.period.label)
        if existing is not None:
            return _recorded(existing, found, tx_hash), False
        _refuse_overlap(found.period)
        payout = models.Payout.create(
            period=found.period.label,
            period_start=found.period.start,
            period_end=found.period.end,
            basis=found.basis,
            budget=str(found.budget),
            inputs_sha256=found.inputs_sha256,
            export_sha256=found.export_sha256,
            tx_hash=tx_hash,
        )
        rows = [
            {
                "name": f"payout {found.period.label}",
                "amount": str(amount),
                "creator": wallet,
                "payout": payout.id,
                "tx_hash": tx_hash,
                "receipts_root": root,
                "receipt_count": count,
            }
            for wallet, _, amount, root, count in found.shares
            if amount > 0
        ]
        if rows:
            models.Payment.insert_many(rows).execute()
    return payout, True


def _one_recorder_at_a_time() -> None:
    """Make the checks below and the insert one step for concurrent recorders: two
    transactions that each found no overlap would otherwise both insert (their labels differ,
    so the unique period does not stop them). SQLite's IMMEDIATE transaction already holds the
    database's write lock. On PostgreSQL, SHARE ROW EXCLUSIVE conflicts with itself and with
    writes to the table, not with its readers; taken before the first read, the reads after it
    see every payout committed before."""
    if is_postgres():
        database.execute_sql(
            f"LOCK TABLE {models.Payout._meta.table_name} IN SHARE ROW EXCLUSIVE MODE"
        )


def _refuse_overlap(period: Period) -> None:
    """A ValueError naming the recorded payout whose period shares any time with ``period``
    (half-open: one may start where another ends)."""
    covering = (
        models.Payout.select()
        .where(
            models.Payout.period != period.label,
            models.Payout.period_start < period.end,
            models.Payout.period_end > period.start,
        )
        .order_by(models.Payout.period_start)
        .first()
    )
    if covering is not None:
        asked = f"{format_timestamp(period.start)}/{format_timestamp(period.end)}"
        raise ValueError(
            f"{asked} overlaps the payout recorded for {covering.period} "
            f"({format_timestamp(covering.period_start)} to "
            f"{format_timestamp(covering.period_end)})"
        )


def _recorded(existing: models.Payout, found: Plan, tx_hash: str | None) -> models.Payout:
    """The payout recorded before for the period, if it is this one. Its payments never
    change; only a transaction hash may be added later (record first, pay, then say with
    what), never replaced."""
    if existing.inputs_sha256 != found.inputs_sha256:
        raise ValueError(
            f"a different payout for {found.period.label} was recorded at "
            f"{format_timestamp(existing.created_at)} (inputs {existing.inputs_sha256})"
        )
    if tx_hash is not None and existing.tx_hash not in (None, tx_hash):
        raise ValueError(f"the payout for {found.period.label} was paid by {existing.tx_hash}")
    if tx_hash is not None and existing.tx_hash is None:
        existing.tx_hash = tx_hash
        existing.save()
        models.Payment.update(tx_hash=tx_hash).where(models.Payment.payout == existing.id).execute()
    return existing


class PeriodOpen(Exception):
    """The period's figures may still change."""


def payout_answer(payout: models.Payout, limit: int = DEFAULT_PAGE, offset: int = 0) -> Payout:
    """The payout with a page of its payments, by wallet, and how many it made: a fleet's
    payout is a payment per worker."""
    mine = models.Payment.payout == payout.id
    payments = (
        models.Payment.select().where(mine).order_by(models.Payment.creator).limit(limit)
    ).offset(offset)
    return Payout(
        **msgspec.structs.asdict(
            payout_summary(payout, models.Payment.select().where(mine).count())
        ),
        payments=[
            PayoutPayment(
                id=p.id,
                wallet_address=p.creator,
                amount=p.amount,
                receipts_root=p.receipts_root,
                receipt_count=p.receipt_count,
            )
            for p in payments
        ],
    )


def payout_summary(payout: models.Payout, payment_count: int) -> PayoutSummary:
    """A payout without its payments (a list of payouts would hold every payment made)."""
    return PayoutSummary(
        id=payout.id,
        period=payout.period,
        start=format_timestamp(payout.period_start),
        end=format_timestamp(payout.period_end),
        basis=payout.basis,
        budget=payout.budget,
        inputs_sha256=payout.inputs_sha256,
        export_sha256=payout.export_sha256,
        tx_hash=payout.tx_hash,
        created_at=format_timestamp(payout.created_at),
        payment_count=payment_count,
    )


# --- HTTP -------------------------------------------------------------------------------------

bp = Blueprint("payouts", __name__, url_prefix="/payouts")
# Money: every route is the operator's, and reads the database.
_ERRORS = (503,)  # and the operator's 401 and 403 (collector/pages/openapi.py)


def _basis(value: object) -> str:
    if value not in BASES:
        raise ApiError(400, _BASIS_RULE.format(where="basis"))
    return value


def _plan(period_text: str, budget: object, basis: object) -> Plan:
    now = utcnow()
    period = reports.period_arg(period_text, now)
    amount = int(parse_amount(budget, "budget"))
    try:
        return plan(period, _basis(basis), amount, **reports.timing(settings(), now))
    except ValueError as exc:
        raise ApiError(422, f"{exc} in {period.label}") from None


def _export(summary: str, reply: Reply) -> dict:
    """The operation of both exports: the JSON and the CSV."""
    return {
        "summary": summary,
        "description": "The CSV streams every share, whatever the fleet: the operator's file. "
        "The JSON is whole, so that its inputs hash to inputsSha256, and holds at most "
        f"{MAX_JSON_SHARES} shares: past them it is a 422 naming the CSV. Both give each "
        "weight as an integer in thousandths of the basis's unit (milliseconds of uptime, "
        "thousandths of a credit), as the hashes cover it.",
        "security": OPERATOR,
        "parameters": (
            dataclasses.replace(PERIOD, required=True),
            Parameter("budget", "query", {"type": "string"}, "a uint256, decimal", required=True),
            Parameter(
                "basis",
                "query",
                {"enum": list(BASES), "default": DEFAULT_BASIS},
                "what the shares weigh: counted uptime or credits",
            ),
        ),
        "replies": {200: reply},
        "errors": (400, 422, *_ERRORS),
    }


_SPLIT = "Split a budget over the workers of a period (nothing recorded)"


@bp.get("/export")
@operation(**_export(_SPLIT, Reply("The split, its inputs and their SHA-256", PayoutPlan)))
@require_operator
def export() -> Response:
    return _exported(csv_suffix=False)


@bp.get("/export.csv")
@operation(
    **_export(
        _SPLIT,
        Reply(",".join(EXPORT_COLUMNS), content={"text/csv": {"schema": {"type": "string"}}}),
    )
)
@require_operator
def export_csv() -> Response:
    return _exported(csv_suffix=True)


def _exported(csv_suffix: bool) -> Response:
    args = request.args
    found = _plan(args.get("period", ""), args.get("budget"), args.get("basis", DEFAULT_BASIS))
    if report_csv.wants_csv(csv_suffix):
        # The operator's file: every share, whatever the fleet (its hash needs all of it).
        headers = {
            "X-Tassium-Inputs-SHA256": found.inputs_sha256,
            "X-Tassium-Export-SHA256": found.export_sha256,
        }
        return Response("".join(found.csv()), mimetype="text/csv", headers=headers)
    # The JSON is whole or refused, never cut: its inputs are what inputsSha256 hashes and
    # what every share is recomputed from.
    if len(found.weights) > MAX_JSON_SHARES:
        raise ApiError(
            422,
            f"{len(found.weights)} shares are more than the JSON export lists "
            f"({MAX_JSON_SHARES}): ask for text/csv (GET /payouts/export.csv), which has them all",
        )
    return answer(found.answer())


@bp.post("")
@operation(
    summary="Record a period's payout: one payment per share, once per period",
    description="409 when a different payout was recorded for the period, when the payout was "
    "paid by another transaction, or when the period overlaps one recorded under another "
    "label; 422 when nobody earned anything in the period or it is not final yet.",
    body=NewPayout,
    replies={
        201: Reply("Recorded", Payout),
        200: Reply("Recorded before, with the same inputs", Payout),
    },
    errors=(400, 408, 409, 413, 422, *_ERRORS),
)
@require_operator
def create() -> Response:
    body = decode(NewPayout)
    # The type has checked the hash's digits; stored lower-case.
    tx_hash = parse_tx_hash(body.tx_hash) if body.tx_hash is not None else None
    found = _plan(body.period, body.budget, body.basis)
    try:
        payout, created = record(
            found, tx_hash=tx_hash, now=utcnow(), settling=settling(settings())
        )
    except PeriodOpen as exc:
        raise ApiError(422, str(exc)) from None
    except ValueError as exc:
        raise ApiError(409, str(exc)) from None
    return answer(payout_answer(payout), 201 if created else 200)


@bp.get("")
@operation(
    summary="Recorded payouts, latest period first, without their payments",
    description="Each payout's paymentCount counts its payments; GET /payouts/{period} pages them.",
    parameters=PAGE,
    replies={200: Reply("A page", PayoutPage)},
    errors=(400, *_ERRORS),
)
@require_operator
def list_payouts() -> Response:
    # Counted by the database for the page alone, in the same query.
    payments = models.Payment.select(fn.COUNT(models.Payment.id)).where(
        models.Payment.payout == models.Payout.id
    )
    latest = models.Payout.select(models.Payout, payments.alias("payment_count")).order_by(
        models.Payout.period_start.desc(), models.Payout.id.desc()
    )
    return answer(PayoutPage(**paginated(latest, lambda p: payout_summary(p, p.payment_count))))


@bp.get("/<path:period>")
@operation(
    summary="A recorded payout, with a page of its payments by wallet",
    parameters=(path_parameter("period", {"type": "string", "minLength": 1}), *PAGE),
    replies={200: Reply("The payout", Payout)},
    errors=(400, 404, *_ERRORS),
)
@require_operator
def get(period: str) -> Response:
    limit, offset = page_bounds()
    payout = models.Payout.get_or_none(models.Payout.period == period)
    if payout is None:
        raise ApiError(404, f"no payout recorded for {period}")
    return answer(payout_answer(payout, limit, offset))
