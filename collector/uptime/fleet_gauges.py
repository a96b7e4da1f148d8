"""The fleet's gauges on ``/metrics`` (collector/web/telemetry.py serves them): counted from the
database at each scrape, so every serving process answers alike."""

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily

from collector.config import CollectorConfig
from collector.store.db import DATABASE_DOWN
from collector.store.models import OpenWindow, Worker
from collector.uptime.online import online_since
from collector.uptime.pings import alive
from collector.web.database_state import database_failed
from protocol.times import utcnow


class FleetGauges:
    """The fleet, counted from the database at each scrape: workers online as the API and
    the dashboard say it (a heartbeat within the gap, collector/uptime/online.py), workers live
    (live_status HEALTHY or WARNING, collector/uptime/pings.py: a ping or a heartbeat within three
    ping intervals), and open windows."""

    def __init__(self, config: CollectorConfig):
        self.config = config

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = utcnow()
        try:
            windows = OpenWindow.select().count()
            online = Worker.select().where(online_since(now, self.config.gap)).count()
            live = Worker.select().where(alive(now, self.config.ping_interval)).count()
        except DATABASE_DOWN as exc:
            # The counters are still worth serving: they show the outage.
            database_failed(exc)
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
