"""The fleet's gauges on ``/metrics`` (collector/web/telemetry.py serves them): counted from the
database at each scrape, so every serving process answers alike, in the one status model
(collector/uptime/states.py).

For alerting: the workers in each state, the share of the fleet not paid now (a rule reads
"more than 10 % of the fleet down" without arithmetic), and, opted into with
``metrics_per_worker`` (a cap, 0 by default), one series per worker: its state and whether it
is paid. The cap keeps the series bounded whatever the fleet: past it, the workers not paid
come first (those an alert is about), then by wallet, and ``tassium_worker_series_truncated``
says that some were left out."""

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily

from collector.config import CollectorConfig
from collector.store.db import DATABASE_DOWN
from collector.store.models import OpenWindow
from collector.uptime import states
from collector.web.database_state import database_failed
from protocol.times import utcnow


class FleetGauges:
    def __init__(self, config: CollectorConfig):
        self.config = config

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now, config = utcnow(), self.config
        timing = {"gap": config.gap, "ping_interval": config.ping_interval}
        try:
            windows = OpenWindow.select().count()
            counts = states.counted(now, **timing)
            listed = (
                states.listed(now, limit=config.metrics_per_worker + 1, **timing)
                if config.metrics_per_worker
                else []
            )
        except DATABASE_DOWN as exc:
            # The counters are still worth serving: they show the outage.
            database_failed(exc)
            yield GaugeMetricFamily("tassium_database_up", "1: the database answered", value=0)
            return
        yield GaugeMetricFamily("tassium_database_up", "1: the database answered", value=1)
        by_state = GaugeMetricFamily(
            "tassium_workers",
            "Workers in each state: up, late, degraded (Docker unavailable), down, never_seen",
            labels=["state"],
        )
        for state in states.STATES:
            by_state.add_metric([state], counts[state])
        yield by_state
        heard = sum(n for s, n in counts.items() if s != states.NEVER_SEEN)
        unpaid = sum(n for s, n in counts.items() if s != states.NEVER_SEEN and not states.PAID[s])
        yield GaugeMetricFamily(
            "tassium_workers_unpaid_ratio",
            "Of the workers ever heard from, the share not paid now (degraded or down)",
            value=unpaid / heard if heard else 0.0,
        )
        yield GaugeMetricFamily(
            "tassium_workers_online",
            "Workers whose last heartbeat is within the gap (up, late or degraded; online in "
            "the API)",
            value=counts[states.UP] + counts[states.LATE] + counts[states.DEGRADED],
        )
        yield GaugeMetricFamily("tassium_open_windows", "Uptime windows still open", value=windows)
        if config.metrics_per_worker:
            yield from _per_worker(listed, config.metrics_per_worker)


def _per_worker(listed: list[tuple[str, str]], cap: int) -> Iterator[GaugeMetricFamily]:
    state = GaugeMetricFamily(
        "tassium_worker_state",
        "1 for the worker's state (metrics_per_worker opts in; unpaid workers first)",
        labels=["wallet", "state"],
    )
    paid = GaugeMetricFamily(
        "tassium_worker_paid", "1 while the worker's time is paid (up or late)", labels=["wallet"]
    )
    for wallet, current in listed[:cap]:
        state.add_metric([wallet, current], 1)
        paid.add_metric([wallet], 1 if states.PAID[current] else 0)
    yield state
    yield paid
    yield GaugeMetricFamily(
        "tassium_worker_series_truncated",
        "1 when the fleet has more workers than metrics_per_worker: some have no series",
        value=1 if len(listed) > cap else 0,
    )
