"""Whether the database answers, as this process's requests find it: an outage is logged once
when it starts and once when it ends, counted, and answered 503 with ``Retry-After``.

It imports only the leaves collector/store/db.py, collector/counters.py and
collector/web/steps.py, so every module that meets the database down (the pipeline's error
answer, the /metrics scrape, /healthz) can share it without importing a route module."""

import logging
import threading

from flask import Response, current_app, jsonify

from collector.counters import DATABASE_ERRORS
from collector.store import db
from collector.web.steps import Call, Step

# Seconds a client is asked to wait before retrying while the database is unavailable.
RETRY_AFTER = 10

log = logging.getLogger(__name__)


class DatabaseState:
    """Whether this process last found the database down: an outage is one log line when it
    starts and one when it ends, not a traceback per request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.down = False

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if not self.down:
                self.down = True
                log.error("database unavailable: %s", db.failure_reason(exc))

    def answered(self) -> None:
        with self._lock:
            if self.down:
                self.down = False
                log.warning("database available again")


def database_failed(exc: BaseException) -> None:
    """What a request does when the database cannot answer: the outage is logged once, counted,
    and this process's connections are dropped so that none broken is handed out once it is
    back."""
    current_app.extensions["tassium.database_state"].failed(exc)
    DATABASE_ERRORS.labels(where="request").inc()
    db.discard_connections()


def database_down(exc: BaseException, **extra: object) -> Response:
    """A 503 for a database that cannot answer (see database_failed)."""
    database_failed(exc)
    response = jsonify(error="database unavailable", **extra)
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response


def database_answered(response: Response) -> Response:
    """After a request: one that opened a connection and did not fail on it found the
    database up (the end of an outage, logged once)."""
    state = current_app.extensions["tassium.database_state"]
    if state.down and response.status_code != 503 and not db.database.is_closed():
        state.answered()
    return response


class DatabaseAnswered(Step):
    """The step that tells the end of an outage."""

    def after(self, call: Call, response: Response) -> Response:
        return database_answered(response)
