"""Prometheus metrics at ``GET /metrics``: heartbeats accepted and refused by reason, the
transactions that applied them, request latency by route, sweeper passes and the windows
they closed, database errors, and the fleet's gauges (workers online and live, open windows).

Counters and the histogram are kept by each process. Under ``tassium-collector serve``
(several gunicorn processes) prometheus_client's multiprocess mode keeps them in files of a
directory that serve.py makes for the run, and a scrape sums every process's files, so it
gives the same totals whichever process answers it (``gather_processes``). Elsewhere (the
Flask test client, one process) this process's registry is read. The gauges are kept nowhere:
they are counted from the database at each scrape, so every process answers alike.

Names are fixed here; labels come from fixed sets (the reasons below, the route's rule rather
than its path, known methods), so no client can make a series per request.
"""

import time
from collections.abc import Callable, Iterator

from flask import Flask, Response, current_app, g, has_request_context, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

# collector.api imports this module too (to count database errors); only its functions are
# used here, when a request runs, so either may be imported first.
from collector import api
from collector.config import CollectorConfig
from collector.db import DATABASE_DOWN
from collector.models import OpenWindow, Worker
from collector.pings import alive
from protocol.heartbeat import SIGNATURE_HEADER
from protocol.times import utcnow

# This process's own metrics; serve.py's processes are read through their files instead.
METRICS = CollectorRegistry()

HEARTBEATS_ACCEPTED = Counter(
    "tassium_heartbeats_accepted",
    "Heartbeats accepted: POST /heartbeat, each of a POST /heartbeats batch, /api/v1/heartbeat",
    registry=METRICS,
)
HEARTBEATS_REJECTED = Counter(
    "tassium_heartbeats_rejected",
    "Heartbeats refused, by reason; a request refused before its heartbeats were read counts once",
    ["reason"],
    registry=METRICS,
)
REQUEST_SECONDS = Histogram(
    "tassium_http_request_duration_seconds",
    "Time from the request's routing to its answer (a streamed body's sending not included)",
    ["route", "method", "status"],
    registry=METRICS,
)
HEARTBEAT_TRANSACTIONS = Counter(
    "tassium_heartbeat_transactions",
    "Transactions that applied heartbeats (group commit): heartbeats per transaction is "
    "the rate of tassium_heartbeats_accepted over this one's",
    registry=METRICS,
)
SWEEPS = Counter("tassium_sweeper_runs", "Sweep passes completed", registry=METRICS)
WINDOWS_CLOSED = Counter(
    "tassium_sweeper_windows_closed",
    "Uptime windows the sweeper closed (silent longer than the gap)",
    registry=METRICS,
)
DATABASE_ERRORS = Counter(
    "tassium_database_errors",
    "Database unavailable: a request answered 503 (or a scrape without the fleet gauges), or "
    "a sweep skipped",
    ["where"],
    registry=METRICS,
)

# Why a heartbeat was refused, by the status of its answer: the agent's own view of it.
_BY_STATUS = {
    400: "malformed",
    404: "unknown_worker",
    408: "too_slow",
    413: "too_large",
    422: "clock",
    503: "database_down",
}
REASONS = (
    *_BY_STATUS.values(),
    "unsigned",
    "bad_signature",
    "duplicate",
    "stale",
    "other",
)
UNMATCHED = "unmatched"  # the route label of a request no route took (404, 405)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Every series exists from the start: a rate over a counter that appears at its first
# increment misses that increment.
for _reason in REASONS:
    HEARTBEATS_REJECTED.labels(reason=_reason)
for _where in ("request", "sweeper"):
    DATABASE_ERRORS.labels(where=_where)


def rejection_reason(status: int, answer: dict, *, signed: bool) -> str:
    """The one rule naming a refusal: 401 is a missing or a bad signature, 409 a duplicate
    (its time is already counted) or stale (out of order, never counted)."""
    if status == 401:
        return "bad_signature" if signed else "unsigned"
    if status == 409:
        return "duplicate" if answer.get("stored") else "stale"
    return _BY_STATUS.get(status, "other")


def heartbeat_answered(status: int, answer: dict, *, signed: bool) -> None:
    """Count one heartbeat by its answer (``status`` 200: accepted)."""
    if has_request_context():
        g.tassium_heartbeats_counted = True
    if status == 200:
        HEARTBEATS_ACCEPTED.inc()
    else:
        HEARTBEATS_REJECTED.labels(reason=rejection_reason(status, answer, signed=signed)).inc()


def carries_heartbeats(view: Callable) -> Callable:
    """Mark a route whose requests carry heartbeats: when one is refused before any of its
    heartbeats reaches ``heartbeats.receive`` (a body too large or too slow, a malformed
    batch), the refusal is counted once, from the answer."""
    view.tassium_carries_heartbeats = True
    return view


class FleetGauges:
    """The fleet, counted from the database at each scrape: workers online as the API and
    the dashboard say it (a heartbeat within the gap, collector/workers.py), workers live
    (live_status HEALTHY or WARNING, collector/pings.py: a ping or a heartbeat within three
    ping intervals), and open windows."""

    def __init__(self, config: CollectorConfig):
        self.config = config

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # Imported here: collector.workers imports collector.api, which imports this module.
        from collector.workers import online_since

        now = utcnow()
        try:
            windows = OpenWindow.select().count()
            online = Worker.select().where(online_since(now, self.config.gap)).count()
            live = Worker.select().where(alive(now, self.config.ping_interval)).count()
        except DATABASE_DOWN as exc:
            # The counters are still worth serving: they show the outage.
            api.database_failed(exc)
            yield GaugeMetricFamily("tassium_database_up", "1: the database answered", value=0)
            return
        yield GaugeMetricFamily("tassium_database_up", "1: the database answered", value=1)
        yield GaugeMetricFamily(
            "tassium_workers_online",
            "Workers whose last heartbeat is within the gap (online in the API)",
            value=online,
        )
        yield GaugeMetricFamily(
            "tassium_workers_live",
            "Workers whose last ping or heartbeat is within 3 ping intervals (HEALTHY or WARNING)",
            value=live,
        )
        yield GaugeMetricFamily("tassium_open_windows", "Uptime windows still open", value=windows)


def _scraped(source, config: CollectorConfig) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(source)
    registry.register(FleetGauges(config))
    return registry


def gather_processes(app: Flask, directory: str) -> None:
    """Answer scrapes from every serving process's files in ``directory``: serve.py turns
    prometheus_client's multiprocess mode on there before any process imports it."""
    app.extensions["tassium.metrics"] = _scraped(
        MultiProcessCollector(None, path=directory), app.config["TASSIUM"]
    )


def request_answered(route: str, method: str, status: int, started: float) -> None:
    """Time one request, from ``started`` (``time.perf_counter()``) to now."""
    method = method if method in METHODS else "other"
    REQUEST_SECONDS.labels(route, method, str(status)).observe(time.perf_counter() - started)


def _observe(response: Response) -> Response:
    started = g.pop("tassium_started", None)
    if started is not None:
        rule = request.url_rule.rule if request.url_rule is not None else UNMATCHED
        request_answered(rule, request.method, response.status_code, started)
    return response


def _count_refused_request(response: Response) -> Response:
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, "tassium_carries_heartbeats", False) and not g.get(
        "tassium_heartbeats_counted"
    ):
        answer = response.get_json(silent=True) if response.is_json else None
        heartbeat_answered(
            response.status_code,
            answer if isinstance(answer, dict) else {},
            signed=SIGNATURE_HEADER in request.headers,
        )
    return response


def init_app(app: Flask, config: CollectorConfig) -> None:
    """Call before any other hook is registered: the timing starts before every other
    before_request hook and ends after every other after_request hook."""
    app.extensions["tassium.metrics"] = _scraped(METRICS, config)

    @app.before_request
    def _start() -> None:
        g.tassium_started = time.perf_counter()

    app.after_request(_observe)
    app.after_request(_count_refused_request)

    @app.get("/metrics")
    @api.require_page_token
    def metrics():
        output = generate_latest(current_app.extensions["tassium.metrics"])
        return Response(output, content_type=CONTENT_TYPE_LATEST)
