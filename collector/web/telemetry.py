"""Prometheus metrics at ``GET /metrics``: heartbeats accepted and refused by reason, the
transactions that applied them, request latency by route, sweeper passes and the windows
they closed, database errors, and the fleet's gauges (workers online and live, open windows).
The counters and the histogram themselves are collector/counters.py's; here they are counted
from requests, and served.

Counters and the histogram are kept by each process. Under ``tassium-collector serve``
(several gunicorn processes) prometheus_client's multiprocess mode keeps them in files of a
directory that serve.py makes for the run, and a scrape sums every process's files, so it
gives the same totals whichever process answers it (``gather_processes``). Elsewhere (the
Flask test client, one process) this process's registry is read. The gauges are kept nowhere:
they are counted from the database at each scrape (collector/uptime/fleet_gauges.py), so every
process answers alike.
"""

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from flask import Flask, Response, current_app, g, has_request_context, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from collector.counters import (
    HEARTBEATS_ACCEPTED,
    HEARTBEATS_REJECTED,
    METHODS,
    METRICS,
    REQUEST_SECONDS,
    UNMATCHED,
    rejection_reason,
)
from collector.web.api import require_page_token
from protocol.heartbeat import SIGNATURE_HEADER

if TYPE_CHECKING:  # the base class came with prometheus-client 0.14; ours may be older
    from prometheus_client.registry import Collector


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


def _scraped(source, fleet) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(source)
    registry.register(fleet)
    return registry


def gather_processes(app: Flask, directory: str) -> None:
    """Answer scrapes from every serving process's files in ``directory``: serve.py turns
    prometheus_client's multiprocess mode on there before any process imports it."""
    app.extensions["tassium.metrics"] = _scraped(
        MultiProcessCollector(None, path=directory), app.extensions["tassium.fleet_gauges"]
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


def init_app(app: Flask, fleet: "Collector") -> None:
    """Call before any other hook is registered: the timing starts before every other
    before_request hook and ends after every other after_request hook. ``fleet`` gives the
    gauges counted at each scrape (collector/uptime/fleet_gauges.py), handed in by the application
    factory so that this module, which every request passes, needs none of the features."""
    app.extensions["tassium.fleet_gauges"] = fleet
    app.extensions["tassium.metrics"] = _scraped(METRICS, fleet)

    @app.before_request
    def _start() -> None:
        g.tassium_started = time.perf_counter()

    app.after_request(_observe)
    app.after_request(_count_refused_request)

    @app.get("/metrics")
    @require_page_token
    def metrics():
        output = generate_latest(current_app.extensions["tassium.metrics"])
        return Response(output, content_type=CONTENT_TYPE_LATEST)
