"""The database: one Peewee proxy bound from the config, a UTC datetime field, and the
per-request connection handling of the Flask tutorial's ``db.py``."""

import os
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

from peewee import (
    Database,
    DatabaseProxy,
    DateTimeField,
    InterfaceError,
    Model,
    OperationalError,
)
from playhouse.pool import (
    MaxConnectionsExceeded,
    PooledDatabase,
    PooledPostgresqlDatabase,
    PooledSqliteDatabase,
)

database = DatabaseProxy()

# What a database that cannot answer raises through Peewee: not reachable, connection lost,
# locked past busy_timeout, or every pooled connection in use.
DATABASE_DOWN = (OperationalError, InterfaceError, MaxConnectionsExceeded)


class UTCDateTimeField(DateTimeField):
    """Aware UTC datetimes in Python, naive UTC in the database (both engines agree on that)."""

    def db_value(self, value):
        if isinstance(value, datetime) and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return super().db_value(value)

    def python_value(self, value):
        value = super().python_value(value)
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class BaseModel(Model):
    class Meta:
        database = database


def sqlite_path(url: str) -> str:
    """The file a ``sqlite:///path`` URL names (relative to the working directory)."""
    return unquote(url[len("sqlite:///") :])


def open_database(url: str, *, create: bool = True) -> Database:
    """A Peewee database for a ``sqlite:///path`` or ``postgresql://`` URL. ``create=False``
    opens an SQLite file only if it exists: a command run elsewhere must not leave an empty
    database behind (and then call it unmigrated)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = sqlite_path(url)
        connect = {}
        if not create:
            # mode=rw: SQLite's own "open, never create", where a check beforehand would race.
            path = "file:" + quote(os.path.abspath(path)) + "?mode=rw"
            connect["uri"] = True
        # IMMEDIATE takes the write lock when a transaction starts, so two processes applying
        # heartbeats queue on busy_timeout instead of failing on a lock upgrade.
        # Pooled, as PostgreSQL is: a request used to open a connection (four pragmas) and
        # close it again, and closing the last connection to a WAL database checkpoints it,
        # which cost more than the heartbeat's own statements. A pooled connection may move
        # between threads, one at a time.
        return PooledSqliteDatabase(
            path,
            pragmas={
                "journal_mode": "wal",
                "busy_timeout": 30_000,
                "foreign_keys": 1,
                "synchronous": "normal",
            },
            lock_type="IMMEDIATE",
            check_same_thread=False,
            max_connections=32,
            stale_timeout=300,
            **connect,
        )
    return PostgresPool(
        unquote(parts.path.lstrip("/")),
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        host=parts.hostname,
        port=parts.port,
        max_connections=32,
        stale_timeout=300,
        # Timestamps are stored as naive UTC; the session must agree for now() and defaults.
        options="-c timezone=UTC",
    )


class PostgresPool(PooledPostgresqlDatabase):
    """Peewee's pool, without a ``SELECT 1`` round trip each time a connection is handed out:
    a connection given back moments ago is used as it is. One idle for longer than
    ``IDLE_CHECK`` seconds (when a restarted server is likelier to have dropped it) is still
    checked; one that fails anyway fails its request with a 503, which drops them all
    (collector/web/api.py), and the agent sends again."""

    IDLE_CHECK = 10.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._returned_at: dict[int, float] = {}

    def _can_reuse(self, conn) -> bool:
        self._returned_at[self.conn_key(conn)] = time.monotonic()
        return super()._can_reuse(conn)

    def _is_closed(self, conn) -> bool:
        returned = self._returned_at.pop(self.conn_key(conn), None)
        recent = returned is not None and time.monotonic() - returned < self.IDLE_CHECK
        if recent and not conn.closed and self._adapter.txn_status(conn) == self._adapter.txn_idle:
            return False
        return super()._is_closed(conn)


def bind(url: str, *, create: bool = True) -> Database:
    db = open_database(url, create=create)
    database.initialize(db)
    return db


def is_postgres() -> bool:
    return isinstance(database.obj, PostgresPool)


def locked(query):
    """Lock the selected rows until the transaction ends. SQLite needs no row lock: its
    IMMEDIATE transactions already hold the database's write lock.

    NO KEY UPDATE, because the lock holders never change a key: it still excludes other
    lockers, but not the KEY SHARE lock a foreign-key check takes. With FOR UPDATE a sweep that
    deleted a window and then inserted its record (checking the worker's key) deadlocked with a
    heartbeat holding that worker and waiting for the window."""
    return query.for_update("FOR NO KEY UPDATE") if is_postgres() else query


def first_page(fetch: Callable[[int], Iterable], limit: int) -> tuple[list, bool]:
    """The first ``limit`` rows ``fetch(n)`` gives (at most ``n``: a query's ``limit``), and
    whether there are more: it is asked for one row more than the page, so a keyset-paged
    answer knows whether to offer a next page without counting what follows."""
    found = list(fetch(limit + 1))
    return found[:limit], len(found) > limit


def failure_reason(exc: BaseException) -> str:
    """The first line of a database error (psycopg2 adds hints below it), for one log line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def discard_connections() -> None:
    """After the database failed, this process's connections may be dead (a restarted server
    leaves every pooled one broken): drop them all instead of handing them out again."""
    db = database.obj
    if isinstance(db, PooledDatabase):
        db.close_idle()
        if not db.is_closed():
            db.manual_close()
    elif not db.is_closed():
        db.close()


def close_all(db: Database) -> None:
    """Close the connection, and with a pool every pooled one as well."""
    db.close()
    if isinstance(db, PooledDatabase):
        db.close_all()


def release() -> None:
    """After a request: its connection (if it opened one) back to the pool."""
    if not database.is_closed():
        database.close()
