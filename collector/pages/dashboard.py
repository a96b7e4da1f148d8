"""The dashboard at ``/``: the fleet with each worker's state (collector/uptime/states.py,
the one status model: its legend and counts), those not paid first, a status-page bar per
worker of the last 24 hours and 30 days, each worker's containers, the deployments by status,
a search by wallet that narrows every section, and with no workers the install line to copy.

Server-rendered with Jinja, no front-end build: a small inline script fetches the page's live
part again (``?fragment=1``) every ``dashboard_refresh`` seconds and swaps it in. Everything
shown comes from the functions behind the JSON routes (``workers.summary``, the containers'
and deployments' ``to_json``, ``reports.worker_reports``), so the page shows nothing the API
does not offer. ``private_pages`` puts it behind the API token (HTTP Basic for a browser).
"""

import secrets
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Blueprint, render_template, request, url_for
from msgspec.structs import asdict
from peewee import fn

from collector.errors import ApiError
from collector.install.setup import install_url
from collector.money import reports, units
from collector.money.reports import COLLECTOR_DOWN, Interval, Period, WorkerReport
from collector.projects import deployments
from collector.store.db import first_page
from collector.store.models import Project, Worker, WorkerContainer
from collector.uptime import states, workers
from collector.web.api import private_page, settings, wallet
from collector.web.schema import Reply, operation, query
from protocol.times import utcnow

bp = Blueprint("dashboard", __name__, template_folder="templates")

# Workers a page shows: a worker's row with its 54 segments, each with its detail, is about
# 10 KB, and the live part is fetched again every dashboard_refresh seconds; a search by
# wallet finds any worker, on any page.
PAGE_SIZE = 20
# The most recent deployments listed under each status (the counts cover all of them).
RECENT_DEPLOYMENTS = 10
# A worker's containers listed on its row (a heartbeat may carry up to 1,000; the row counts
# all the machine runs, GET /workers/<wallet>/containers lists those its heartbeat did).
CONTAINERS_SHOWN = 20
# The downtimes a segment's detail lists: a worker flapping all day would otherwise put
# hundreds in each segment of its bars, on every refresh.
DOWNTIMES_SHOWN = 3
# (period, segments): a segment per hour of the last day, per day of the last 30.
BARS = (("24h", 24), ("30d", 30))
CAUSE_LABELS = {
    reports.AGENT_SILENT: "agent silent",
    reports.DOCKER_UNAVAILABLE: "Docker unavailable",
    reports.COLLECTOR_DOWN: "collector down",
}
_MILLI = timedelta(milliseconds=1)
# A worker's badge: its state, and whether its time is being paid when it is not.
BADGES = {
    states.UP: "up",
    states.LATE: "late",
    states.DEGRADED: "degraded — Docker unavailable, not paid",
    states.DOWN: "down — not paid",
    states.NEVER_SEEN: "never seen — not paid",
}
# How each bar's time axis prints its start and end.
AXIS = {"24h": "%Y-%m-%d %H:%M", "30d": "%Y-%m-%d"}
# The order a page lists its workers in: who is down right now first, those paid last.
ORDER = (states.DOWN, states.DEGRADED, states.LATE, states.NEVER_SEEN, states.UP)
# What the empty state's install line puts where the owner's wallet goes.
PLACEHOLDER = {"evm": "0x…", "stellar": "G…"}


@dataclass(frozen=True)
class Segment:
    """One piece of a bar: [start, end), the worker's uptime in it, and the downtime
    intervals that overlap it, clipped to it."""

    start: datetime
    end: datetime
    up_millis: int
    downtime: tuple[Interval, ...]

    @property
    def down_millis(self) -> int:
        return sum((i.end - i.start) // _MILLI for i in self.downtime)

    @property
    def fraction(self) -> float | None:
        """Up over observed, as the report counts the whole period; None when the segment
        holds nothing observed (before the worker was known, or the not-yet-late stretch
        since its last heartbeat)."""
        observed = self.up_millis + self.down_millis
        return self.up_millis / observed if observed else None

    @property
    def state(self) -> str:
        """The segment's colour: ``none``, ``up``, ``collector`` (down only while the
        collector was, which is not the worker's doing), ``partial`` or ``down``."""
        fraction = self.fraction
        if fraction is None:
            return "none"
        if fraction == 1:
            return "up"
        if all(i.cause == COLLECTOR_DOWN for i in self.downtime):
            return "collector"
        return "down" if fraction == 0 else "partial"

    def describe(self) -> str:
        """The tooltip: the segment, its uptime, and each downtime with its cause."""
        lines = [f"{_span(self.start, self.end)} UTC: {_percent(self.fraction)}"]
        for interval in self.downtime[:DOWNTIMES_SHOWN]:
            cause = CAUSE_LABELS.get(interval.cause, interval.cause)
            lines.append(f"down {_span(interval.start, interval.end, self.start)} ({cause})")
        if len(self.downtime) > DOWNTIMES_SHOWN:
            lines.append(f"and {len(self.downtime) - DOWNTIMES_SHOWN} more times down")
        return "\n".join(lines)


def segments(report: WorkerReport, count: int) -> list[Segment]:
    """Cut the report's period into ``count`` equal segments (the last ends exactly at the
    period's end) and share the uptime spans and downtime intervals out over them."""
    start, end = report.period.start, report.period.end
    bounds = [start + (end - start) * i / count for i in range(count)] + [end]
    up = [0] * count
    down: list[list[Interval]] = [[] for _ in range(count)]
    for a, b, index in _pieces(((a, b) for a, b in report.uptime), bounds):
        up[index] += (b - a) // _MILLI
    for interval in report.downtime:
        for a, b, index in _pieces([(interval.start, interval.end)], bounds):
            down[index].append(Interval(a, b, interval.cause))
    return [Segment(bounds[i], bounds[i + 1], up[i], tuple(down[i])) for i in range(count)]


def _pieces(spans, bounds: list[datetime]):
    """Each span cut at the bounds: (start, end, segment index) for every non-empty piece."""
    for a, b in spans:
        a, b = max(a, bounds[0]), min(b, bounds[-1])
        index = bisect_right(bounds, a) - 1
        while a < b and index < len(bounds) - 1:
            piece_end = min(b, bounds[index + 1])
            if piece_end > a:
                yield a, piece_end, index
            a, index = piece_end, index + 1


def _span(a: datetime, b: datetime, within: datetime | None = None) -> str:
    """``2026-11-28 14:07–15:07``, dates left out where the context already says them."""
    day = "%Y-%m-%d "
    first = a.strftime(("" if within and a.date() == within.date() else day) + "%H:%M:%S")
    last = b.strftime(("" if b.date() == a.date() else day) + "%H:%M:%S")
    return f"{first}–{last}"


def _percent(fraction: float | None) -> str:
    if fraction is None:
        return "no data"
    return f"{units.percent(fraction)} up"  # the one rule: one decimal, rounded down


def _since(worker: dict) -> str | None:
    """Since when a worker is in its state, where the page says it: down and degraded since
    its last heartbeat, late since its last sign of life."""
    moment = {
        states.DOWN: worker["lastHeartbeat"],
        states.DEGRADED: worker["lastHeartbeat"],
        states.LATE: worker["lastPing"],
    }.get(worker["state"])
    return moment[:19].replace("T", " ") + " UTC" if moment else None


def _search() -> str | None:
    text = request.args.get("wallet", "").strip()
    return wallet(text, "wallet") if text else None


def _fleet(address: str | None, after: str | None, now: datetime) -> dict:
    """A page of the fleet by wallet: the workers after ``after`` (a range read of the
    primary key, however deep in a million workers), with the counts of the whole fleet."""
    config = settings()
    query = Worker.select().order_by(Worker.wallet_address)
    if address is not None:
        query = query.where(Worker.wallet_address == address)
    total = query.count()
    if after is not None:
        query = query.where(Worker.wallet_address > after)
    rows, more = first_page(query.limit, PAGE_SIZE)
    wallets = [w.wallet_address for w in rows]
    held, held_count = _containers(wallets)
    bars: dict[str, dict[str, tuple[WorkerReport, list[Segment]]]] = defaultdict(dict)
    for label, count in BARS:
        period = Period.parse(label, now)
        for report in reports.worker_reports(wallets, period, **reports.timing(config, now)):
            bars[report.wallet][label] = (report, segments(report, count))
    listed = [
        {
            # Hostnames only on a private dashboard: that page is the operator's.
            **workers.summary(w, now, private=config.private_pages),
            "containers": held[w.wallet_address],
            # What the machine runs, when its agent says (a large one lists only some).
            "containerCount": held_count.get(w.wallet_address, 0)
            if w.container_total is None
            else w.container_total,
            "bars": bars[w.wallet_address],
        }
        for w in rows
    ]
    for worker in listed:
        worker["since"] = _since(worker)
    # The page's workers by wallet, those not paid first (sorted is stable); the next page
    # still starts after this page's last wallet.
    listed.sort(key=lambda w: ORDER.index(w["state"]))
    timing = {"gap": config.gap, "ping_interval": config.ping_interval}
    if address is None:
        counts = states.counted(now, **timing)
    else:  # the one worker searched for, as its row says
        counts = dict.fromkeys(states.STATES, 0)
        for worker in listed:
            counts[worker["state"]] += 1
    return {
        "workers": listed,
        "attention": _attention(now, timing) if address is None else [],
        "total": total,
        "shown": len(rows),
        "counts": counts,
        "after": after,
        "next": rows[-1].wallet_address if more else None,
    }


# The workers "down right now" listed above the fleet, at most.
ATTENTION_SHOWN = 10


def _attention(now: datetime, timing: dict) -> list[dict]:
    """Who is down, degraded or late right now across the whole fleet, and since when: the
    latest to stop first (the news), whatever page the fleet is on."""
    wanted = (
        states.where(states.DOWN, now, **timing)
        | states.where(states.DEGRADED, now, **timing)
        | states.where(states.LATE, now, **timing)
    )
    rows = (
        Worker.select()
        .where(wanted)
        .order_by(Worker.last_heartbeat_at.desc(), Worker.wallet_address)
        .limit(ATTENTION_SHOWN)
    )
    found = []
    for w in rows:
        worker = workers.summary(w, now, private=False)
        found.append({**worker, "since": _since(worker)})
    return found


def _containers(wallets: list[str]) -> tuple[dict[str, list[dict]], dict[str, int]]:
    """The first CONTAINERS_SHOWN containers of each worker, in the order
    GET /workers/<wallet>/containers lists them, and how many each holds: one query each."""
    mine = WorkerContainer.worker.in_(wallets)
    counts = dict(
        WorkerContainer.select(WorkerContainer.worker, fn.COUNT(WorkerContainer.id))
        .where(mine)
        .group_by(WorkerContainer.worker)
        .tuples()
    )
    order = [WorkerContainer.container_name, WorkerContainer.id]
    ranked = WorkerContainer.select(
        WorkerContainer.id,
        fn.ROW_NUMBER().over(partition_by=[WorkerContainer.worker], order_by=order).alias("n"),
    ).where(mine)
    shown = (
        WorkerContainer.select()
        .join(ranked, on=WorkerContainer.id == ranked.c.id)
        .where(ranked.c.n <= CONTAINERS_SHOWN)
        .order_by(*order)
    )
    held = defaultdict(list)
    for container in shown:
        held[container.worker_address].append(asdict(workers.ListedContainer.of(container)))
    return held, counts


def _install_line() -> dict:
    """The line an owner runs on a new worker, as this collector serves it, with a
    placeholder where their wallet goes; or why this collector cannot serve one yet."""
    config = settings()
    placeholder = PLACEHOLDER.get(config.wallet_format, "…")
    try:
        url = install_url(config)
    except ApiError as exc:
        return {"line": None, "problem": exc.message, "placeholder": placeholder}
    token = "&token=tsk_…" if config.enrollment_policy == "token" else ""
    return {
        "line": f"curl -fsSL '{url}/setup.sh?wallet={placeholder}{token}' | sh",
        "problem": None,
        "placeholder": placeholder,
        "token": bool(token),
    }


def _deployments(creator: str | None) -> dict:
    def mine(query):
        return query.where(Project.creator == creator) if creator is not None else query

    counts = dict(
        mine(Project.select(Project.status, fn.COUNT(Project.id))).group_by(Project.status).tuples()
    )
    return {
        status: {
            "count": counts.get(status, 0),
            # The order GET /deployments lists them in.
            "recent": [
                deployments.to_json(p)
                for p in mine(Project.select())
                .where(Project.status == status)
                .order_by(Project.created_at.desc(), Project.id.desc())
                .limit(RECENT_DEPLOYMENTS)
            ],
        }
        for status in deployments.STATUSES
    }


_HTML = {"text/html": {"schema": {"type": "string"}}}


@bp.get("/")
@operation(
    summary="The dashboard: the fleet, its uptime bars and containers, the deployments",
    description="HTML for browsers. With `private_pages` it needs the API token, as a bearer "
    "token or as the password of HTTP Basic (a 401 challenges for it).",
    parameters=(
        query("wallet", {"type": "string"}, "only this wallet's worker and deployments"),
        query(
            "after",
            {"type": "string"},
            f"the fleet's page after this wallet, {PAGE_SIZE} workers a page (a search by "
            "wallet finds a worker on any page)",
        ),
        query("fragment", {"type": "string"}, "1: only the live part, for refreshing"),
    ),
    replies={
        200: Reply("The page", content=_HTML),
        400: Reply("The page, saying what is wrong with the query", content=_HTML),
    },
    errors=(401, 503),
)
@private_page
def dashboard():
    now = utcnow()
    error = None
    try:
        address, after = _search(), workers.after_cursor()
    except ApiError as exc:
        error, address, after = exc.message, None, None
    if error is None:
        fleet = _fleet(address, after, now)
        shown_deployments = _deployments(address)
    else:
        # A query the page cannot read narrows every section to nothing, rather than the
        # fleet to nothing and the deployments to all of them.
        counts = dict.fromkeys(states.STATES, 0)
        fleet = {"workers": [], "total": 0, "shown": 0, "counts": counts}
        fleet |= {"after": None, "next": None}
        shown_deployments = {}
    empty = error is None and address is None and fleet["total"] == 0
    values = {
        "now": now,
        "error": error,
        "search": request.args.get("wallet", ""),
        "wallet": address,
        "fleet": fleet,
        "deployments": shown_deployments,
        "install": _install_line() if empty else None,
        "bars": BARS,
        "badges": BADGES,
        "axis": AXIS,
        "meaning": states.MEANING,
        "percent": _percent,
        "page_url": lambda after: url_for("dashboard.dashboard", wallet=address, after=after),
    }
    nonce = secrets.token_urlsafe(16)
    if request.args.get("fragment") == "1":
        body = render_template("dashboard/live.html", **values)
    else:
        refresh = 0 if error else settings().dashboard_refresh
        body = render_template("dashboard/page.html", nonce=nonce, refresh=refresh, **values)
    headers = {
        # Hostnames, container names and deployment fields come from workers and users: the
        # page is escaped, and on top of that runs no script or style but its own.
        "Content-Security-Policy": (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; img-src data:; form-action 'self'; base-uri 'none'; "
            "frame-ancestors 'none'"
        ),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return body, 400 if error else 200, headers
