"""Pings: the light signed "still here" that keeps a worker from counting as late
(collector/uptime/states.py).

A ping must not cost a durable commit: at a million workers pinging every 30 seconds that
would be 33,000 commits a second for a value nobody is paid by. So a process keeps the latest
ping per worker in memory and writes them all every ``FLUSH_SECONDS`` in one transaction,
on PostgreSQL without waiting for the WAL flush (``synchronous_commit = off``). A ping lost in
a crash costs nothing: the worker's next ping (or heartbeat) replaces it. A status read in
the process that took a ping sees it at once; other processes see it after the next flush.
"""

import atexit
import logging
import threading
from datetime import datetime

from collector.store.db import DATABASE_DOWN, database, failure_reason, is_postgres
from collector.store.models import Worker

log = logging.getLogger(__name__)

FLUSH_SECONDS = 5.0

# The original worker client's labels, from a worker's state (collector/uptime/states.py).
HEALTHY, WARNING, DEAD, UNKNOWN = "HEALTHY", "WARNING", "DEAD", "UNKNOWN"


class PingBook:
    """The pings this process took and has not written yet."""

    def __init__(self, flush_seconds: float = FLUSH_SECONDS):
        self.flush_seconds = flush_seconds
        self._pending: dict[str, datetime] = {}
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._failing = False

    def record(self, wallet_address: str, at: datetime) -> None:
        with self._lock:
            previous = self._pending.get(wallet_address)
            if previous is None or at > previous:
                self._pending[wallet_address] = at
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_forever, name="tassium-pings", daemon=True
                )
                self._flusher.start()
                atexit.register(self.flush)

    def latest(self, wallet_address: str) -> datetime | None:
        with self._lock:
            return self._pending.get(wallet_address)

    def flush(self) -> int:
        """Write what is pending; return how many workers' pings were written. On failure the
        pings are kept for the next flush (unless a newer one came meanwhile)."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return 0
        try:
            with database.connection_context(), database.atomic():
                if is_postgres():
                    database.execute_sql("SET LOCAL synchronous_commit TO OFF")
                # In address order, as heartbeats lock workers (collector/uptime/windows.py), so
                # that the two never wait for each other in a cycle.
                for address, at in sorted(batch.items()):
                    # Never backwards: another process may have written a later ping.
                    Worker.update(last_ping_at=at).where(
                        (Worker.wallet_address == address)
                        & (Worker.last_ping_at.is_null() | (Worker.last_ping_at < at))
                    ).execute()
        except DATABASE_DOWN as exc:
            with self._lock:
                for address, at in batch.items():
                    if address not in self._pending or self._pending[address] < at:
                        self._pending[address] = at
            if not self._failing:
                self._failing = True
                log.warning("pings not written, database unavailable: %s", failure_reason(exc))
            return 0
        if self._failing:
            self._failing = False
            log.warning("pings written again")
        return len(batch)

    def _flush_forever(self) -> None:
        stop = threading.Event()
        while not stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception:  # a bug here must not end the flusher for good
                log.exception("writing pings failed")
