"""Payouts: a budget split over the workers in proportion to what they earned in a period.

The weights are each worker's counted uptime (in milliseconds, the default) or credits (in
thousandths) from the reports (collector/money/reports.py), whichever the operator chooses. Uptime
is what the collector observed itself; credits also rest on the capacity each worker declared
(bounded by the operator's settings, collector/uptime/capacity.py). The split is exact, in
integers: every worker first gets ``budget * weight // total``; what is left over (fewer
units than there are workers) goes one unit each to the workers with the largest remainders
``budget * weight % total``, ties to the lower wallet address (Hamilton's method). So the
shares sum to the budget and anyone holding the inputs can recompute every share.

An export carries the SHA-256 of its inputs (the canonical JSON in ``inputs``) and of the
export itself (the CSV bytes). Recording a payout writes one ``payments`` row per share and
happens once per period: the same request again answers the recorded payout, a different
one for that period is a conflict, and so is a period overlapping one paid under another
label, so that no hour is paid twice. A recorded payout is never changed, except that the
transaction that paid it may be named once.
"""

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Blueprint, Response, jsonify, request
from peewee import fn

from collector.config import CollectorConfig
from collector.errors import ApiError
from collector.identity.access import ensure_operator
from collector.money import report_csv, reports
from collector.money.payments import parse_amount
from collector.money.reports import Period
from collector.store.db import database, is_postgres
from collector.store.models import Payment, Payout
from collector.web.api import (
    DEFAULT_PAGE,
    accept_fields,
    json_object,
    page_bounds,
    paginated,
    settings,
)
from protocol.times import format_timestamp, utcnow

BASES = ("uptime", "credits")
# Uptime by default: the collector measured it itself, while credits also weigh the capacity
# each worker declared, which an operator should choose to trust.
DEFAULT_BASIS = "uptime"
EXPORT_COLUMNS = ("walletAddress", "weight", "amount")
# The shares a JSON export may hold (about 160 bytes each, twice: shares and inputs); past
# them it is the CSV, which holds every share.
MAX_JSON_SHARES = 1000
_TX_HASH = re.compile(r"(0x)?[0-9a-fA-F]{64}")


def parse_tx_hash(value: object) -> str:
    """A transaction hash as stored: 64 hex digits, lower case, ``0x`` kept if given."""
    if not isinstance(value, str) or not _TX_HASH.fullmatch(value):
        raise ValueError("must be 64 hex digits, with or without 0x")
    return value.lower()


def settling(config: CollectorConfig) -> timedelta:
    """How long after its end a period is final: heartbeats may arrive up to max_backfill
    late, and a window grows up to the gap past its last one."""
    return timedelta(seconds=config.max_backfill + config.gap)


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

    @property
    def shares(self) -> list[tuple[str, int, int]]:
        """(wallet, weight, amount) for each worker with a weight."""
        return [
            (w, weight, amount)
            for (w, weight), amount in zip(self.weights, self.amounts, strict=True)
        ]

    @property
    def inputs(self) -> dict:
        return {
            "period": self.period.label,
            "from": format_timestamp(self.period.start),
            "to": format_timestamp(self.period.end),
            "basis": self.basis,
            "budget": str(self.budget),
            "weights": [[wallet, weight] for wallet, weight in self.weights],
        }

    @property
    def inputs_sha256(self) -> str:
        return _sha256(canonical_json(self.inputs))

    def csv(self) -> Iterator[str]:
        return report_csv.csv_lines(EXPORT_COLUMNS, self.shares)

    @property
    def export_sha256(self) -> str:
        return _sha256("".join(self.csv()))

    def to_json(self) -> dict:
        return {
            "period": self.period.to_json(),
            "basis": self.basis,
            "budget": str(self.budget),
            "shares": [
                {"walletAddress": wallet, "weight": weight, "amount": str(amount)}
                for wallet, weight, amount in self.shares
            ],
            "inputs": self.inputs,
            "inputsSha256": self.inputs_sha256,
            "exportSha256": self.export_sha256,
        }


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
    return Plan(period, basis, budget, weights, split(budget, weights))


def record(
    found: Plan, *, tx_hash: str | None, now: datetime, settling: timedelta
) -> tuple[Payout, bool]:
    """Record the payout and its payments; ``(payout, created)``. The same plan recorded
    before answers that one; a different one for the period, or a period overlapping a payout
    recorded under another label, raises ValueError; a period not final yet PeriodOpen."""
    if found.period.end + settling > now:
        ready = format_timestamp(found.period.end + settling)
        raise PeriodOpen(f"{found.period.label} can be paid from {ready} on")
    with database.atomic():
        _one_recorder_at_a_time()
        # The period's own payout first: asking again answers it even where payouts recorded
        # before periods had to be disjoint overlap it.
        existing = Payout.get_or_none(Payout.period == found.period.label)
        if existing is not None:
            return _recorded(existing, found, tx_hash), False
        _refuse_overlap(found.period)
        payout = Payout.create(
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
            }
            for wallet, _, amount in found.shares
            if amount > 0
        ]
        if rows:
            Payment.insert_many(rows).execute()
    return payout, True


def _one_recorder_at_a_time() -> None:
    """Make the checks below and the insert one step for concurrent recorders: two
    transactions that each found no overlap would otherwise both insert (their labels differ,
    so the unique period does not stop them). SQLite's IMMEDIATE transaction already holds the
    database's write lock. On PostgreSQL, SHARE ROW EXCLUSIVE conflicts with itself and with
    writes to the table, not with its readers; taken before the first read, the reads after it
    see every payout committed before."""
    if is_postgres():
        database.execute_sql(f"LOCK TABLE {Payout._meta.table_name} IN SHARE ROW EXCLUSIVE MODE")


def _refuse_overlap(period: Period) -> None:
    """A ValueError naming the recorded payout whose period shares any time with ``period``
    (half-open: one may start where another ends)."""
    covering = (
        Payout.select()
        .where(
            Payout.period != period.label,
            Payout.period_start < period.end,
            Payout.period_end > period.start,
        )
        .order_by(Payout.period_start)
        .first()
    )
    if covering is not None:
        asked = f"{format_timestamp(period.start)}/{format_timestamp(period.end)}"
        raise ValueError(
            f"{asked} overlaps the payout recorded for {covering.period} "
            f"({format_timestamp(covering.period_start)} to "
            f"{format_timestamp(covering.period_end)})"
        )


def _recorded(existing: Payout, found: Plan, tx_hash: str | None) -> Payout:
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
        Payment.update(tx_hash=tx_hash).where(Payment.payout == existing.id).execute()
    return existing


class PeriodOpen(Exception):
    """The period's figures may still change."""


def payout_json(payout: Payout, limit: int = DEFAULT_PAGE, offset: int = 0) -> dict:
    """The payout with a page of its payments, by wallet, and how many it made: a fleet's
    payout is a payment per worker."""
    payments = (
        Payment.select()
        .where(Payment.payout == payout.id)
        .order_by(Payment.creator)
        .limit(limit)
        .offset(offset)
    )
    return {
        **payout_summary(payout),
        "paymentCount": Payment.select().where(Payment.payout == payout.id).count(),
        "payments": [
            {"id": p.id, "walletAddress": p.creator, "amount": p.amount} for p in payments
        ],
    }


def payout_summary(payout: Payout, payment_count: int | None = None) -> dict:
    """A payout without its payments (a list of payouts would hold every payment made)."""
    summary = {
        "id": payout.id,
        "period": payout.period,
        "from": format_timestamp(payout.period_start),
        "to": format_timestamp(payout.period_end),
        "basis": payout.basis,
        "budget": payout.budget,
        "inputsSha256": payout.inputs_sha256,
        "exportSha256": payout.export_sha256,
        "txHash": payout.tx_hash,
        "createdAt": format_timestamp(payout.created_at),
    }
    if payment_count is not None:
        summary["paymentCount"] = payment_count
    return summary


# --- HTTP -------------------------------------------------------------------------------------

bp = Blueprint("payouts", __name__, url_prefix="/payouts")
# Money: every route is the operator's.
bp.before_request(ensure_operator)


def _basis(value: object) -> str:
    if value not in BASES:
        raise ApiError(400, f"basis must be {' or '.join(BASES)}")
    return value


def _plan(period_text: object, budget: object, basis: object) -> Plan:
    now = utcnow()
    period = reports.period_arg(period_text, now)
    amount = int(parse_amount(budget, "budget"))
    try:
        return plan(period, _basis(basis), amount, **reports.timing(settings(), now))
    except ValueError as exc:
        raise ApiError(422, f"{exc} in {period.label}") from None


@bp.get("/export")
@bp.get("/export.csv", defaults={"csv_suffix": True})
def export(csv_suffix: bool = False):
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
    return jsonify(found.to_json())


@bp.post("")
def create():
    fields = accept_fields(
        json_object(), {"period", "budget", "basis", "txHash"}, required=("period", "budget")
    )
    tx_hash = fields.get("txHash")
    if tx_hash is not None:
        try:
            tx_hash = parse_tx_hash(tx_hash)
        except ValueError as exc:
            raise ApiError(400, f"txHash {exc}") from None
    found = _plan(fields["period"], fields["budget"], fields.get("basis", DEFAULT_BASIS))
    try:
        payout, created = record(
            found, tx_hash=tx_hash, now=utcnow(), settling=settling(settings())
        )
    except PeriodOpen as exc:
        raise ApiError(422, str(exc)) from None
    except ValueError as exc:
        raise ApiError(409, str(exc)) from None
    return jsonify(payout_json(payout)), 201 if created else 200


@bp.get("")
def list_payouts():
    # Counted by the database for the page alone, in the same query.
    payments = Payment.select(fn.COUNT(Payment.id)).where(Payment.payout == Payout.id)
    query = Payout.select(Payout, payments.alias("payment_count")).order_by(
        Payout.period_start.desc(), Payout.id.desc()
    )
    return jsonify(paginated(query, lambda p: payout_summary(p, p.payment_count)))


@bp.get("/<path:period>")
def get(period: str):
    limit, offset = page_bounds()
    payout = Payout.get_or_none(Payout.period == period)
    if payout is None:
        raise ApiError(404, f"no payout recorded for {period}")
    return jsonify(payout_json(payout, limit, offset))
