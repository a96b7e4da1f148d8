"""The reports' routes: ``GET /reports/workers/<wallet>`` (the wallet's owner or the operator)
and ``GET /reports/fleet`` (the operator), as JSON or, by a ``.csv`` path or an Accept header,
as CSV (collector/money/report_csv.py). The figures are collector/money/reports.py's."""

from typing import Annotated

from flask import Blueprint, Response, request
from msgspec import Meta

from collector.errors import ApiError
from collector.identity.access import ensure_wallet, require_operator
from collector.money.report_csv import downtime_csv, fleet_csv, wants_csv
from collector.money.reports import (
    MAX_SPANS_SHOWN,
    SPANS_SHOWN,
    Period,
    PeriodAnswer,
    ReportRow,
    WorkerReportAnswer,
    fleet,
    period_arg,
    timing,
    worker_report,
)
from collector.store.db import first_page
from collector.web.api import query_int, settings, wallet
from collector.web.schema import (
    OWNER,
    WALLET_IN_PATH,
    Answer,
    Reply,
    Wallet,
    answer,
    limit,
    operation,
    query,
    wallet_ref,
)
from protocol.times import utcnow

# A page of the fleet report, by default and at most (its CSV streams the whole fleet).
FLEET_PAGE = 100
MAX_FLEET_PAGE = 1000
DEFAULT_PERIOD = "30d"

bp = Blueprint("reports", __name__, url_prefix="/reports")


class FleetReport(Answer):
    period: PeriodAnswer
    items: list[ReportRow]
    limit: Annotated[int, Meta(ge=1)]
    next: Annotated[
        Wallet | None, Meta(description="pass as after for the next page; null on the last")
    ]


# The query parameters, as the document describes them.
PERIOD = query(
    "period",
    {"type": "string", "default": DEFAULT_PERIOD},
    "24h, 7d, 30d, a UTC month like 2026-11, or an interval like "
    "2026-11-01T00:00:00Z/2026-11-15T00:00:00Z",
)
_AFTER = query("after", wallet_ref(), "the page after this wallet (the previous page's next)")
_ERRORS = (400, 401, 403, 404, 503)
_CSV = {"text/csv": {"schema": {"type": "string"}}}


def _period() -> Period:
    return period_arg(request.args.get("period", DEFAULT_PERIOD), utcnow())


def _timing() -> dict:
    return timing(settings(), utcnow())


@bp.get("/workers/<address>")
@operation(
    summary="A worker's uptime and each downtime with its cause",
    security=OWNER,
    parameters=(
        WALLET_IN_PATH,
        PERIOD,
        limit(
            SPANS_SHOWN,
            MAX_SPANS_SHOWN,
            "the period's last this many uptime spans and downtimes listed (JSON); "
            "uptimeCount and downtimeCount count them all",
        ),
    ),
    replies={200: Reply("The worker's report (text/csv: all of its downtime)", WorkerReportAnswer)},
    errors=_ERRORS,
)
def worker(address: str) -> Response:
    return _worker(address, csv_suffix=False)


@bp.get("/workers/<address>.csv")
@operation(
    summary="A worker's downtime as CSV",
    security=OWNER,
    parameters=(WALLET_IN_PATH, PERIOD),
    replies={200: Reply("from,to,seconds,cause", content=_CSV)},
    errors=_ERRORS,
)
def worker_csv(address: str) -> Response:
    return _worker(address, csv_suffix=True)


def _worker(address: str, csv_suffix: bool) -> Response:
    address = wallet(address, "wallet")
    ensure_wallet(address)
    period = _period()
    shown = query_int("limit", SPANS_SHOWN, 1, MAX_SPANS_SHOWN)
    report = worker_report(address, period, bounds=settings(), **_timing())
    if report is None:
        raise ApiError(404, f"no worker {address}")
    if wants_csv(csv_suffix):
        return downtime_csv(report)
    return answer(report.answer(shown))


@bp.get("/fleet")
@operation(
    summary="Every worker's uptime and credits in a period, by wallet",
    parameters=(PERIOD, _AFTER, limit(FLEET_PAGE, MAX_FLEET_PAGE, "page")),
    replies={200: Reply("A page of the fleet report (text/csv: all of it)", FleetReport)},
    errors=_ERRORS,
)
@require_operator
def fleet_report() -> Response:
    return _fleet(csv_suffix=False)


@bp.get("/fleet.csv")
@operation(
    summary="The fleet report as CSV, streamed",
    parameters=(PERIOD, _AFTER),
    replies={200: Reply("The fleet report", content=_CSV)},
    errors=_ERRORS,
)
@require_operator
def fleet_report_csv() -> Response:
    return _fleet(csv_suffix=True)


def _fleet(csv_suffix: bool) -> Response:
    period = _period()
    after = request.args.get("after")
    after = wallet(after, "after") if after is not None else None
    if wants_csv(csv_suffix):
        return fleet_csv(period, after=after, bounds=settings(), timing=_timing())
    size = query_int("limit", FLEET_PAGE, 1, MAX_FLEET_PAGE)
    when, config = _timing(), settings()
    page, more = first_page(
        lambda n: fleet(period, after=after, limit=n, bounds=config, **when), size
    )
    return answer(
        FleetReport(
            period=PeriodAnswer.of(period),
            items=[report.summary() for report in page],
            limit=size,
            next=page[-1].wallet if more else None,
        )
    )
