"""The reports as CSV: the text a line at a time, whether a request asks for it, and the two
CSV answers, a worker's downtime and the whole fleet, streamed a batch of workers at a time.
The figures are collector/money/reports.py's; the routes that answer with these are
collector/money/report_routes.py's."""

from collections.abc import Iterable, Iterator

import msgspec
from flask import Response, request, stream_with_context

from collector.money.reports import FLEET_COLUMNS, Downtime, Period, WorkerReport, fleet
from collector.store.db import database
from collector.uptime import capacity

# A downtime's fields, as its JSON names them.
DOWNTIME_COLUMNS = tuple(f.encode_name for f in msgspec.structs.fields(Downtime))


def csv_lines(header: Iterable[str], rows: Iterable[Iterable[object]]) -> Iterator[str]:
    """CSV text a line at a time. Every value is a number, a timestamp, a validated wallet or
    one of our own words, so none needs quoting (and none can start a spreadsheet formula)."""
    yield ",".join(header) + "\r\n"
    for row in rows:
        yield ",".join("" if value is None else str(value) for value in row) + "\r\n"


def wants_csv(csv_suffix: bool) -> bool:
    """A ``.csv`` path, or an Accept header preferring CSV to JSON."""
    if csv_suffix:
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/csv"])
    return (
        best == "text/csv"
        and request.accept_mimetypes["text/csv"] > request.accept_mimetypes["application/json"]
    )


def csv_response(lines: Iterator[str], filename: str) -> Response:
    return Response(
        stream_with_context(lines),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def downtime_csv(report: WorkerReport) -> Response:
    """Every downtime of a worker's report, however many its JSON lists."""
    rows = (msgspec.structs.astuple(interval.answer()) for interval in report.downtime)
    return csv_response(csv_lines(DOWNTIME_COLUMNS, rows), f"downtime-{report.period.label}.csv")


def fleet_csv(
    period: Period, *, after: str | None, bounds: capacity.Bounds, timing: dict
) -> Response:
    """Every worker's row of the fleet report from after ``after``, read while the answer is
    sent: however large the fleet, one batch of workers is in memory at a time."""

    def rows() -> Iterator[tuple]:
        with database.connection_context():
            for report in fleet(period, after=after, bounds=bounds, **timing):
                yield msgspec.structs.astuple(report.summary())

    safe = period.label.replace("/", "_").replace(":", "")
    return csv_response(csv_lines(FLEET_COLUMNS, rows()), f"fleet-{safe}.csv")
