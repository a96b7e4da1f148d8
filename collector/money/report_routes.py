"""The reports' routes: ``GET /reports/workers/<wallet>`` (the wallet's owner or the operator)
and ``GET /reports/fleet`` (the operator), as JSON or, by a ``.csv`` path or an Accept header,
as CSV (collector/money/report_csv.py). The figures are collector/money/reports.py's."""

from flask import Blueprint, jsonify, request

from collector.errors import ApiError
from collector.identity.access import ensure_wallet, require_operator
from collector.money.report_csv import downtime_csv, fleet_csv, wants_csv
from collector.money.reports import (
    MAX_SPANS_SHOWN,
    SPANS_SHOWN,
    Period,
    fleet,
    period_arg,
    timing,
    worker_report,
)
from collector.store.db import first_page
from collector.web.api import query_int, settings, wallet
from protocol.times import utcnow

# A page of the fleet report, by default and at most (its CSV streams the whole fleet).
FLEET_PAGE = 100
MAX_FLEET_PAGE = 1000

bp = Blueprint("reports", __name__, url_prefix="/reports")


def _period() -> Period:
    return period_arg(request.args.get("period", "30d"), utcnow())


def _timing() -> dict:
    return timing(settings(), utcnow())


@bp.get("/workers/<address>")
@bp.get("/workers/<address>.csv", defaults={"csv_suffix": True})
def worker(address: str, csv_suffix: bool = False):
    address = wallet(address, "wallet")
    ensure_wallet(address)
    period = _period()
    shown = query_int("limit", SPANS_SHOWN, 1, MAX_SPANS_SHOWN)
    report = worker_report(address, period, bounds=settings(), **_timing())
    if report is None:
        raise ApiError(404, f"no worker {address}")
    if wants_csv(csv_suffix):
        return downtime_csv(report)
    return jsonify(report.to_json(shown))


@bp.get("/fleet")
@bp.get("/fleet.csv", defaults={"csv_suffix": True})
@require_operator
def fleet_report(csv_suffix: bool = False):
    period = _period()
    after = request.args.get("after")
    after = wallet(after, "after") if after is not None else None
    if wants_csv(csv_suffix):
        return fleet_csv(period, after=after, bounds=settings(), timing=_timing())
    limit = query_int("limit", FLEET_PAGE, 1, MAX_FLEET_PAGE)
    when, config = _timing(), settings()
    page, more = first_page(
        lambda n: fleet(period, after=after, limit=n, bounds=config, **when), limit
    )
    return jsonify(
        {
            "period": period.to_json(),
            "items": [report.summary() for report in page],
            "limit": limit,
            "next": page[-1].wallet if more else None,
        }
    )
