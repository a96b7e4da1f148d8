"""Uptime reports: how long each worker was up in a period, and why it was down otherwise.

A worker is observed from its first heartbeat (or, never heard from, its enrollment) to
the end of the period or now. Inside that span, the uptime windows are uptime
and every gap is downtime, each piece of it with the cause the collector has evidence for:

- ``docker_unavailable``: the agent kept beating but said Docker was down
  (collector/uptime/windows.py);
- ``collector_down``: no collector process was running (collector/uptime/liveness.py), so nobody
  could hear the worker; an agent with a spool fills such gaps in when it replays;
- ``agent_silent``: the collector was up and heard nothing.

The stretch since the worker's last heartbeat is not yet downtime while it is shorter than
the gap: the next heartbeat will still extend the window over it. So a worker beating on
time reads 100 %, and a period's figures can only change within the gap of its end.

Reports are computed for a batch of workers at a time with one query per table, so a fleet
of any size streams in constant memory.

Given the operator's bounds, a report shows the capacity the worker is credited for
(collector/uptime/capacity.py) and flags what the operator should look at: ``capacity_at_maximum``,
``capacity_pending`` (it reports more than it is credited for, awaiting approval) and, in the
fleet report, ``credits_outlier``: credits per hour of uptime above ``OUTLIER_FACTOR`` times
the fleet's median, which one more aggregate query reads for the whole fleet.

This module computes the reports; their CSV is collector/money/report_csv.py's and their routes
collector/money/report_routes.py's.
"""

import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import msgspec
from msgspec import Meta
from peewee import Field, fn

from collector.config import CollectorConfig
from collector.errors import ApiError
from collector.store.db import database, is_postgres
from collector.store.models import (
    CreditDay,
    DockerOutage,
    OpenWindow,
    UptimeRecord,
    Worker,
    WorkerMetric,
    credits,
)
from collector.uptime import capacity, liveness
from collector.uptime.capacity import CapacityChange, CreditedCapacity
from collector.uptime.windows import _micros as micros_sql
from collector.web.schema import Answer, Timestamp, Wallet
from protocol.periods import Period
from protocol.times import format_timestamp

AGENT_SILENT = "agent_silent"
DOCKER_UNAVAILABLE = "docker_unavailable"
COLLECTOR_DOWN = "collector_down"
# When evidence overlaps, the more specific cause wins: a heartbeat that said Docker was
# down (even one replayed after a collector outage) beats the collector's own silence.
CAUSES = (DOCKER_UNAVAILABLE, COLLECTOR_DOWN, AGENT_SILENT)

CREDITS_OUTLIER = "credits_outlier"
# Credits per hour of uptime above this many times the fleet's median flag a worker: a
# machine far larger than the fleet's, or one credited for more than it has.
OUTLIER_FACTOR = 5
# The capacity changes a worker's report lists: the period's last ones (it counts them all).
CAPACITY_CHANGES_SHOWN = 100
# The uptime spans and downtimes a worker's JSON report lists, by default and at most: the
# period's last ones, with their counts (a worker flapping for a year has tens of thousands;
# its CSV streams every downtime, and GET /workers/<wallet>/uptime pages the records).
SPANS_SHOWN = 100
MAX_SPANS_SHOWN = 1000
BATCH = 500

Span = tuple[datetime, datetime]

# --- the reports as answered --------------------------------------------------------------

Seconds = Annotated[float, Meta(ge=0)]
Count = Annotated[int, Meta(ge=0)]
Credits = Annotated[
    float,
    Meta(
        ge=0,
        description="Credits, exact to the thousandth (a whole number when whole): the unit the "
        "CLI and the dashboard print; a payout's weight counts thousandths of them",
    ),
]


class PeriodAnswer(Answer):
    label: str
    start: Timestamp = msgspec.field(name="from")
    end: Timestamp = msgspec.field(name="to")

    @classmethod
    def of(cls, period: Period) -> "PeriodAnswer":
        return cls(
            label=period.label,
            start=format_timestamp(period.start),
            end=format_timestamp(period.end),
        )


class UptimeSpan(Answer):
    start: Timestamp = msgspec.field(name="from")
    end: Timestamp = msgspec.field(name="to")


class Downtime(Answer):
    start: Timestamp = msgspec.field(name="from")
    end: Timestamp = msgspec.field(name="to")
    seconds: Seconds
    cause: Literal[CAUSES]


class ReportRow(Answer, rename="camel"):
    """A worker's row of the fleet report (and of its CSV, in this order)."""

    wallet_address: Wallet
    uptime_seconds: Seconds
    downtime_seconds: Seconds
    uptime_fraction: Annotated[
        Annotated[float, Meta(ge=0, le=1)] | None,
        Meta(
            description="the share of the observed time that was uptime, rounded to the "
            "millionth (the CLI and the dashboard print it as a percentage with one decimal, "
            "rounded down); null when the worker was not known yet in the period"
        ),
    ]
    credits: Credits
    flags: Annotated[
        list[Literal[capacity.AT_MAXIMUM, capacity.PENDING, CREDITS_OUTLIER]],
        Meta(
            description=f"{capacity.AT_MAXIMUM}: a capacity fact at the operator's maximum; "
            f"{capacity.PENDING}: reports more than it is credited for, awaiting approval; "
            f"{CREDITS_OUTLIER} (the fleet report only): credits per hour of uptime above "
            f"{OUTLIER_FACTOR} times the fleet's median"
        ),
    ]


class WorkerReportAnswer(ReportRow):
    """A worker's report: its row of the fleet report, and what the figures come from."""

    period: PeriodAnswer
    observed_from: Timestamp | None
    observed_to: Timestamp | None
    uptime: Annotated[
        list[UptimeSpan],
        Meta(description="the period's last spans up to the limit, oldest first"),
    ]
    uptime_count: Count
    downtime: Annotated[
        list[Downtime],
        Meta(description="the period's last downtimes up to the limit, oldest first"),
    ]
    downtime_count: Count
    capacity: Annotated[
        CreditedCapacity | None,
        Meta(description="what the worker is credited for (null: none fixed yet)"),
    ]
    capacity_changes: Annotated[
        list[CapacityChange],
        Meta(
            description=f"the period's last {CAPACITY_CHANGES_SHOWN} changes of the capacity, "
            "oldest first"
        ),
    ]
    capacity_change_count: Count


@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime
    cause: str

    def answer(self) -> Downtime:
        return Downtime(
            start=format_timestamp(self.start),
            end=format_timestamp(self.end),
            seconds=_seconds(_micros(self.start, self.end)),
            cause=self.cause,
        )


class Flags(tuple):
    """A report's flags: a list in JSON, ``a;b`` in CSV and the command's table."""

    def __str__(self) -> str:
        return ";".join(self)


@dataclass(frozen=True)
class WorkerReport:
    wallet: str
    period: Period
    observed: Span | None  # None when the worker was not known yet in the period
    uptime: list[Span] = field(default_factory=list)
    downtime: list[Interval] = field(default_factory=list)
    credits_millis: int = 0
    flags: Flags = Flags()
    capacity: CreditedCapacity | None = None
    capacity_changes: list[CapacityChange] = field(default_factory=list)  # in worker_report only
    capacity_change_count: int = 0

    @property
    def uptime_micros(self) -> int:
        return sum(_micros(a, b) for a, b in self.uptime)

    @property
    def observed_micros(self) -> int:
        return _micros(*self.observed) if self.observed else 0

    @property
    def uptime_millis(self) -> int:
        return self.uptime_micros // 1000

    @property
    def fraction(self) -> float | None:
        observed = self.observed_micros
        return round(self.uptime_micros / observed, 6) if observed else None

    def summary(self) -> ReportRow:
        """The fleet report's row."""
        return ReportRow(
            wallet_address=self.wallet,
            uptime_seconds=_seconds(self.uptime_micros),
            downtime_seconds=_seconds(self.observed_micros - self.uptime_micros),
            uptime_fraction=self.fraction,
            credits=credits(self.credits_millis),
            flags=self.flags,
        )

    def answer(self, shown: int = SPANS_SHOWN) -> WorkerReportAnswer:
        """The report, listing the period's last ``shown`` uptime spans and downtimes (the
        figures count them all)."""
        observed = [format_timestamp(t) for t in self.observed] if self.observed else [None] * 2
        return WorkerReportAnswer(
            **msgspec.structs.asdict(self.summary()),
            period=PeriodAnswer.of(self.period),
            observed_from=observed[0],
            observed_to=observed[1],
            uptime=[
                UptimeSpan(start=format_timestamp(a), end=format_timestamp(b))
                for a, b in _last(self.uptime, shown)
            ],
            uptime_count=len(self.uptime),
            downtime=[interval.answer() for interval in _last(self.downtime, shown)],
            downtime_count=len(self.downtime),
            capacity=self.capacity,
            capacity_changes=self.capacity_changes,
            capacity_change_count=self.capacity_change_count,
        )


def _last(items: list, count: int) -> list:
    return items[max(0, len(items) - count) :]


def _micros(start: datetime, end: datetime) -> int:
    return (end - start) // timedelta(microseconds=1)


def _seconds(micros: int) -> int | float:
    whole, rest = divmod(micros, 1_000_000)
    return whole if rest == 0 else round(micros / 1_000_000, 3)


def worker_reports(
    wallets: list[str],
    period: Period,
    *,
    now: datetime,
    gap: timedelta,
    liveness_interval: timedelta,
    collector_outages: list[Span] | None = None,
    bounds: capacity.Bounds | None = None,
    median: float | None = None,
) -> list[WorkerReport]:
    """The reports of ``wallets`` (known workers, in that order) for ``period``; the
    collector's outages in it are read unless given (the same for every batch of a fleet).
    Flagged with the operator's ``bounds``, as a credits outlier against the fleet's
    ``median`` (see _median_rate) when given."""
    workers = {
        w.wallet_address: w for w in Worker.select().where(Worker.wallet_address.in_(wallets))
    }
    spans = _overlapping(UptimeRecord.time_from, UptimeRecord.time_to, wallets, period)
    windows = _overlapping(OpenWindow.start_time, OpenWindow.end_time, wallets, period)
    for address, window in windows.items():
        spans[address] += window
    docker = _overlapping(DockerOutage.time_from, DockerOutage.time_to, wallets, period)
    first_heard = _first_heard(wallets)
    collector = collector_outages
    if collector is None:
        collector = liveness.outages(period.start, period.end, interval=liveness_interval, now=now)
    earned = _credits(wallets, period)
    reports = []
    for address in wallets:
        worker = workers.get(address)
        if worker is None:
            continue
        observed = _observed(worker, first_heard.get(address), period, now, gap)
        if observed is None:
            report = WorkerReport(address, period, None, credits_millis=earned[address])
        else:
            uptime = _clip(spans[address], *observed)
            downtime = [
                piece
                for a, b in _gaps(uptime, *observed)
                for piece in _explain(a, b, docker=docker[address], collector=collector)
            ]
            report = WorkerReport(address, period, observed, uptime, downtime, earned[address])
        reports.append(_with_capacity(report, worker, bounds, median))
    return reports


def _with_capacity(
    report: WorkerReport, worker: Worker, bounds: capacity.Bounds | None, median: float | None
) -> WorkerReport:
    flags = capacity.flags(worker, bounds) if bounds is not None else []
    up = report.uptime_micros
    if median and up > 0 and report.credits_millis / up > OUTLIER_FACTOR * median:
        flags.append(CREDITS_OUTLIER)
    shown = CreditedCapacity.of(capacity.held(worker))
    return replace(report, flags=Flags(flags), capacity=shown)


def worker_report(
    wallet: str,
    period: Period,
    *,
    now: datetime,
    gap: timedelta,
    liveness_interval: timedelta,
    bounds: capacity.Bounds | None = None,
) -> WorkerReport | None:
    """One worker's report, with the period's capacity changes (its flags are those about
    capacity: credits_outlier compares with the fleet, which only the fleet report reads)."""
    found = worker_reports(
        [wallet], period, now=now, gap=gap, liveness_interval=liveness_interval, bounds=bounds
    )
    if not found:
        return None
    shown, count = capacity.changes(wallet, period.start, period.end, CAPACITY_CHANGES_SHOWN)
    return replace(found[0], capacity_changes=shown, capacity_change_count=count)


def fleet(
    period: Period,
    *,
    now: datetime,
    gap: timedelta,
    liveness_interval: timedelta,
    after: str | None = None,
    limit: int | None = None,
    bounds: capacity.Bounds | None = None,
) -> Iterator[WorkerReport]:
    """Every worker's report in wallet order (from after ``after``, at most ``limit``), read
    a batch at a time: memory stays flat however large the fleet. Flagged with the
    operator's ``bounds``, when given."""
    collector = liveness.outages(period.start, period.end, interval=liveness_interval, now=now)
    median = _median_rate(period) if bounds is not None else None
    remaining = limit
    while remaining is None or remaining > 0:
        size = BATCH if remaining is None else min(BATCH, remaining)
        query = Worker.select(Worker.wallet_address).order_by(Worker.wallet_address).limit(size)
        if after is not None:
            query = query.where(Worker.wallet_address > after)
        wallets = [address for (address,) in query.tuples()]
        if not wallets:
            return
        yield from worker_reports(
            wallets,
            period,
            now=now,
            gap=gap,
            liveness_interval=liveness_interval,
            collector_outages=collector,
            bounds=bounds,
            median=median,
        )
        # Under gunicorn's gevent workers this yields to the other requests (heartbeats) of
        # the process, and to its keep-alive with the master, between batches of a long
        # report; elsewhere it costs nothing.
        time.sleep(0)
        after = wallets[-1]
        if remaining is not None:
            remaining -= len(wallets)
        if len(wallets) < size:
            return


def _overlapping(
    first: Field, last: Field, wallets: list[str], period: Period
) -> defaultdict[str, list[Span]]:
    """Each worker's spans [first, last] of one table that overlap the period."""
    model = first.model
    rows = (
        model.select(model.worker, first, last)
        .where(model.worker.in_(wallets) & (last >= period.start) & (first < period.end))
        .tuples()
    )
    found: defaultdict[str, list[Span]] = defaultdict(list)
    for address, a, b in rows:
        found[address].append((a, b))
    return found


def _first_heard(wallets: list[str]) -> dict[str, datetime]:
    """Each worker's first heartbeat: the start of its first window or Docker outage."""
    first: dict[str, datetime] = {}
    for model, column in (
        (UptimeRecord, UptimeRecord.time_from),
        (OpenWindow, OpenWindow.start_time),
        (DockerOutage, DockerOutage.time_from),
    ):
        query = (
            model.select(model.worker, fn.MIN(column))
            .where(model.worker.in_(wallets))
            .group_by(model.worker)
            .tuples()
        )
        for address, at in query:
            at = column.python_value(at)  # an aggregate comes back as the database stores it
            first[address] = min(first.get(address, at), at)
    return first


def _observed(
    worker: Worker, first_heard: datetime | None, period: Period, now: datetime, gap: timedelta
) -> Span | None:
    # From the first heartbeat: the time from enrollment to starting the agent is setting
    # up, not downtime. A worker never heard from is observed from its enrollment.
    start = max(period.start, first_heard or worker.created_at)
    end = min(period.end, now)
    last = worker.last_heartbeat_at
    if last is not None and now - last <= gap:
        # Not downtime yet: the next heartbeat may still extend the window over it.
        end = min(end, max(last, start))
    return (start, end) if end > start else None


def _clip(spans: list[Span], start: datetime, end: datetime) -> list[Span]:
    clipped = sorted((max(a, start), min(b, end)) for a, b in spans if b > start and a < end)
    merged: list[Span] = []
    for a, b in clipped:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        elif b > a:
            merged.append((a, b))
    return merged


def _gaps(uptime: list[Span], start: datetime, end: datetime) -> Iterator[Span]:
    cursor = start
    for a, b in uptime:
        if a > cursor:
            yield cursor, a
        cursor = max(cursor, b)
    if cursor < end:
        yield cursor, end


def _explain(
    start: datetime, end: datetime, *, docker: list[Span], collector: list[Span]
) -> list[Interval]:
    """Cut one stretch of downtime into pieces by the evidence for each, most specific first."""
    evidence = {
        DOCKER_UNAVAILABLE: _clip(docker, start, end),
        COLLECTOR_DOWN: _clip(collector, start, end),
    }
    cuts = sorted({start, end, *(t for spans in evidence.values() for span in spans for t in span)})
    pieces: list[Interval] = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        middle = a + (b - a) / 2
        cause = next(
            (c for c, spans in evidence.items() if any(x <= middle < y for x, y in spans)),
            AGENT_SILENT,
        )
        if pieces and pieces[-1].cause == cause and pieces[-1].end == a:
            pieces[-1] = Interval(pieces[-1].start, b, cause)
        else:
            pieces.append(Interval(a, b, cause))
    return pieces


def _credits(wallets: list[str], period: Period) -> defaultdict[str, int]:
    """Credits earned in the period: the metrics points inside it, and the days summed when
    their points passed the retention (only days wholly inside the period can count)."""
    earned: defaultdict[str, int] = defaultdict(int)
    points = (
        WorkerMetric.select(WorkerMetric.worker, fn.SUM(WorkerMetric.credits_millis))
        .where(
            WorkerMetric.worker.in_(wallets)
            & (WorkerMetric.timestamp >= period.start)
            & (WorkerMetric.timestamp < period.end)
        )
        .group_by(WorkerMetric.worker)
        .tuples()
    )
    first, last = period.whole_days
    days = (
        CreditDay.select(CreditDay.worker, fn.SUM(CreditDay.credits_millis))
        .where(CreditDay.worker.in_(wallets) & (CreditDay.day >= first) & (CreditDay.day < last))
        .group_by(CreditDay.worker)
        .tuples()
    )
    for address, millis in [*points, *days]:
        earned[address] += int(millis or 0)
    return earned


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _median_rate(period: Period) -> float | None:
    """The fleet's median credits (in thousandths) per microsecond of uptime in the period,
    over the workers up in it (of two middle values, the upper); None when none was. One
    aggregate over the period's credits and windows, as _credits and the windows sum them."""
    p = database.param
    least, greatest = ("LEAST", "GREATEST") if is_postgres() else ("MIN", "MAX")
    first, last = period.whole_days
    sql = f"""
        WITH earned AS (
            SELECT worker_address, SUM(credits_millis) AS millis FROM (
                SELECT worker_address, credits_millis FROM worker_metrics
                WHERE timestamp >= {p} AND timestamp < {p}
                UNION ALL
                SELECT worker_address, credits_millis FROM worker_credit_days
                WHERE day >= {p} AND day < {p}
            ) AS c GROUP BY worker_address
        ), up AS (
            SELECT worker_address, SUM({least}({micros_sql("time_to")}, {p})
                - {greatest}({micros_sql("time_from")}, {p})) AS micros FROM (
                SELECT worker_address, time_from, time_to FROM worker_uptime_records
                WHERE time_to >= {p} AND time_from < {p}
                UNION ALL
                SELECT worker_address, start_time, end_time FROM open_windows
                WHERE end_time >= {p} AND start_time < {p}
            ) AS s GROUP BY worker_address
        ), ranked AS (
            SELECT 1.0 * COALESCE(earned.millis, 0) / up.micros AS rate,
                ROW_NUMBER() OVER (ORDER BY 1.0 * COALESCE(earned.millis, 0) / up.micros) AS n,
                COUNT(*) OVER () AS total
            FROM up LEFT JOIN earned ON earned.worker_address = up.worker_address
            WHERE up.micros > 0
        )
        SELECT rate FROM ranked WHERE n = total / 2 + 1"""  # noqa: S608 - no input in the text
    start, end = (WorkerMetric.timestamp.db_value(t) for t in (period.start, period.end))
    span = [(t - _EPOCH) // timedelta(microseconds=1) for t in (period.end, period.start)]
    days = [CreditDay.day.db_value(d) for d in (first, last)]
    row = database.execute_sql(sql, [start, end, *days, *span, start, end, start, end]).fetchone()
    return None if row is None else float(row[0])


# The fleet report's columns, in the JSON's names: the CSV and the CLI's table read them from
# here, and their rows are ReportRow's values in this order.
FLEET_COLUMNS = tuple(f.encode_name for f in msgspec.structs.fields(ReportRow))


def period_arg(text: str, now: datetime) -> Period:
    """A period as a request names it, or a 400 saying what is wrong."""
    try:
        return Period.parse(text, now)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def timing(config: CollectorConfig, now: datetime) -> dict:
    """The keyword arguments of every report function, from the configuration."""
    return {
        "now": now,
        "gap": timedelta(seconds=config.gap),
        "liveness_interval": timedelta(seconds=config.liveness_interval),
    }
