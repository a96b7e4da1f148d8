"""The collector's Prometheus metrics: the counters and the histogram, their names, the fixed
sets their labels come from, and the rule naming a refused heartbeat. A leaf: it imports
nothing of the collector's, so whatever counts (the heartbeat routes, the sweeper, the
database-outage answer) imports it without reaching the /metrics route (collector/web/telemetry.py).

Each process keeps its own. Under ``tassium-collector serve`` prometheus_client's
multiprocess mode, which serve.py turns on before any process imports this module, keeps them
in files that a scrape sums.

Names are fixed here; labels come from fixed sets (the reasons below, the route's rule rather
than its path, known methods), so no client can make a series per request.
"""

from prometheus_client import CollectorRegistry, Counter, Histogram

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
