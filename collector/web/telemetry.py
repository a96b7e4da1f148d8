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

from flask import Flask, Response, current_app, g, has_app_context
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
from collector.web.api import private_page
from collector.web.schema import Reply, operation
from collector.web.steps import Call, Step
from protocol.heartbeat import SIGNATURE_HEADER

if TYPE_CHECKING:  # the base class came with prometheus-client 0.14; ours may be older
    from prometheus_client.registry import Collector


def heartbeat_answered(status: int, answer: dict, *, signed: bool) -> None:
    """Count one heartbeat by its answer (``status`` 200: accepted)."""
    if has_app_context():
        g.tassium_heartbeats_counted = True
    if status == 200:
        HEARTBEATS_ACCEPTED.inc()
    else:
        HEARTBEATS_REJECTED.labels(reason=rejection_reason(status, answer, signed=signed)).inc()


CARRIES_HEARTBEATS = "tassium_carries_heartbeats"


def carries_heartbeats(view: Callable) -> Callable:
    """Mark a route whose requests carry heartbeats: when one is refused before any of its
    heartbeats reaches ``heartbeats.receive`` (a body too large or too slow, a malformed
    batch), the refusal is counted once, from the answer (``CountRefusedHeartbeats``)."""
    setattr(view, CARRIES_HEARTBEATS, True)
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


class Timing(Step):
    """The request's time at /metrics, by route, method and status: first in the steps, so
    that it spans all the others."""

    def after(self, call: Call, response: Response) -> Response:
        request_answered(call.rule or UNMATCHED, call.method, response.status_code, call.started)
        return response


class CountRefusedHeartbeats(Step):
    """A request carrying heartbeats that was refused before any of them was counted."""

    def after(self, call: Call, response: Response) -> Response:
        if call.marked(CARRIES_HEARTBEATS) and not g.get("tassium_heartbeats_counted"):
            answer = response.get_json(silent=True) if response.is_json else None
            heartbeat_answered(
                response.status_code,
                answer if isinstance(answer, dict) else {},
                signed=call.header(SIGNATURE_HEADER) is not None,
            )
        return response


def init_app(app: Flask, fleet: "Collector") -> None:
    """``fleet`` gives the gauges counted at each scrape (collector/uptime/fleet_gauges.py),
    handed in by the application factory so that this module, which every request passes,
    needs none of the features."""
    app.extensions["tassium.fleet_gauges"] = fleet
    app.extensions["tassium.metrics"] = _scraped(METRICS, fleet)

    @app.get("/metrics")
    @private_page
    @operation(
        summary="Prometheus metrics: heartbeats, request latency, the fleet, the sweeper",
        description="The Prometheus text format, summed over every serving process. With "
        "`private_pages` it needs the API token, as on `/`. While the database is unavailable "
        "it still answers, with `tassium_database_up 0` and no fleet gauges.",
        replies={200: Reply("The metrics", content={"text/plain": {"schema": {"type": "string"}}})},
    )
    def metrics():
        output = generate_latest(current_app.extensions["tassium.metrics"])
        return Response(output, content_type=CONTENT_TYPE_LATEST)
