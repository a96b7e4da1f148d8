"""Uptime windows: the plan's section 6.2 and the sweeper's pass, next to their data.

A worker has at most one open window. A heartbeat extends it, or, after a silence longer
than the gap, closes it into an uptime record and opens a new one. The sweeper closes
windows that went silent. A heartbeat saying Docker is unavailable proves the machine alive
but unable to run deployments: it closes the window and extends a Docker outage instead,
which the reports show as the reason for that downtime. Both run in one transaction under a
lock on the worker (its row on PostgreSQL, the database write lock on SQLite), so any mix of
processes and requests ends in the records a serial run would give.
"""

import functools
import hashlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from msgspec import Meta
from peewee import (
    SQL,
    Cast,
    DatabaseError,
    DataError,
    Expression,
    Field,
    IntegrityError,
    InterfaceError,
    InternalError,
    Node,
    NodeList,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Query,
    Select,
    Value,
    ValuesList,
    fn,
)

from collector.store.db import UTCDateTimeField, database, first_page, is_postgres, locked
from collector.store.models import (
    DockerOutage,
    OpenWindow,
    UptimeRecord,
    Worker,
    WorkerContainer,
    WorkerMetric,
)
from collector.uptime import capacity, credits
from collector.uptime.vouching import Verdicts, Vouching
from collector.web.schema import Answer, Timestamp
from protocol.heartbeat import Heartbeat
from protocol.times import format_timestamp

# --- where SQLite and PostgreSQL differ ---------------------------------------------------------
#
# Every statement here is built from the models with Peewee's query builder; what the two
# databases say differently is in these two classes (and db.locked), picked by _dialect().
# The statements every heartbeat runs are compiled once per database kind (``_compiled``), as
# composing them per heartbeat cost more CPU than anything else a heartbeat does.


class _Slot:
    """A parameter of a statement compiled once: whatever its run puts at ``index``."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def _slot(index: int) -> Value:
    # No converter: a placeholder, not a value for the field it is compared with or written to.
    return Value(_Slot(index), converter=False, unpack=False)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    order: tuple[int, ...]  # the slots in the order the text takes its parameters

    def params(self, row: Sequence) -> list:
        return [row[i] for i in self.order]


@dataclass(frozen=True, eq=False)
class _Write:
    """Rows of ``fields`` written for a group of heartbeats: inserted, or (``update``) set on
    the row their first field is the key of, ``added`` added to instead of set."""

    fields: tuple[Field, ...]
    update: bool = False
    added: Field | None = None

    def one_row(self, _kind: "_Dialect") -> Query:
        key, model = self.fields[0], self.fields[0].model
        if not self.update:
            # No RETURNING of the ids nobody reads.
            return model.insert({f: _slot(i) for i, f in enumerate(self.fields)}).returning()
        values = {f: _slot(i) for i, f in enumerate(self.fields) if f is not key}
        if self.added is not None:
            values[self.added] = self.added + values[self.added]
        return model.update(values).where(key == _slot(0))


# Peewee's error for each of the driver's, by the DB-API name both use.
_PEEWEE_ERRORS = {
    error.__name__: error
    for error in (
        DataError,
        DatabaseError,
        IntegrityError,
        InterfaceError,
        InternalError,
        NotSupportedError,
        OperationalError,
        ProgrammingError,
    )
}


class _SQLite:
    """In the process, SQLite has no round trip to save: many rows are the one-row statement
    run for each. A list is one JSON parameter, so the text is the same whatever its length."""

    # A data-modifying statement cannot feed another (no DELETE in a WITH).
    moves_in_one_statement = False

    @staticmethod
    def one_of(field: Field, index: int) -> Expression:
        return field.in_(Select([fn.json_each(_slot(index))], [SQL("value")]))

    @staticmethod
    def list_value(values: list) -> object:
        return json.dumps(values)

    @staticmethod
    def write(write: _Write, rows: list[Sequence]) -> None:
        statement = _compiled(write.one_row, _SQLite)
        # executemany: an execute_sql a row cost a group 15 % more CPU. Its errors raised as
        # execute_sql raises them: a lost database must be the OperationalError of a 503.
        try:
            database.cursor().executemany(statement.sql, [statement.params(r) for r in rows])
        except sqlite3.Error as exc:
            error = _PEEWEE_ERRORS.get(type(exc).__name__)
            if error is None:
                raise
            raise error(exc, *exc.args) from exc

    @staticmethod
    def least(*values) -> Node:
        return fn.MIN(*values)

    @staticmethod
    def greatest(*values) -> Node:
        return fn.MAX(*values)

    @staticmethod
    def micros(column: Node) -> Node:
        # SQLite keeps the text Python wrote (``2026-11-24 21:00:00.000005``); unixepoch()
        # (SQLite 3.38) is 2.5 times as fast as strftime('%s') over a year of records.
        if sqlite3.sqlite_version_info >= (3, 38):
            seconds = fn.unixepoch(column)
        else:
            seconds = Cast(fn.strftime(SQL("'%s'"), column), "INTEGER")
        fraction = Cast(fn.substr(column, SQL("21"), SQL("6")), "INTEGER")
        return seconds * SQL("1000000") + fraction


class _Postgres:
    """Each statement is a round trip: rows are written in one statement, a VALUES list of
    them, whose text is the one-row list's with the row repeated."""

    moves_in_one_statement = True
    # The schema's floats are DOUBLE PRECISION (collector/store/migrations.py), not Peewee's REAL.
    _TYPES = {"FLOAT": "DOUBLE PRECISION"}

    @staticmethod
    def one_of(field: Field, index: int) -> Expression:
        return field == fn.ANY(_slot(index))

    @staticmethod
    def list_value(values: list) -> object:
        return values

    @classmethod
    def write(cls, write: _Write, rows: list[Sequence]) -> None:
        if len(rows) == 1:
            # Cheaper than the VALUES list for the server to plan.
            statement = _compiled(write.one_row, cls)
            database.execute_sql(statement.sql, statement.params(rows[0]))
            return
        head, row, tail, order = cls._values_list(write)
        sql = head + ", ".join([row] * len(rows)) + tail
        database.execute_sql(sql, [r[i] for r in rows for i in order])

    @staticmethod
    @functools.cache
    def _values_list(write: _Write) -> tuple[str, str, str, tuple[int, ...]]:
        """The text of ``write`` with a VALUES list of one row: before the row, the row, after
        it; and the row's slots in the order it takes them."""
        query, row = _Postgres._one_row_list(write)
        statement, values = _compile(query), _compile(NodeList(row, ", ", True))
        head, tail = statement.sql.split(values.sql)  # the row, exactly once
        return head, values.sql, tail, values.order

    @classmethod
    def _one_row_list(cls, write: _Write) -> tuple[Query, list[Node]]:
        key, model = write.fields[0], write.fields[0].model
        if not write.update:
            row = [_slot(i) for i in range(len(write.fields))]
            return model.insert_many([row], list(write.fields)).returning(), row
        # Typed: unlike an INSERT's, an UPDATE's VALUES do not take their columns' types.
        row = [Cast(_slot(i), cls._type(f)) for i, f in enumerate(write.fields)]
        rows = ValuesList([row], columns=[f.column_name for f in write.fields], alias="v")

        def given(field: Field) -> Node:
            return getattr(rows.c, field.column_name)

        values = {f: given(f) for f in write.fields if f is not key}
        if write.added is not None:
            values[write.added] = write.added + given(write.added)
        return model.update(values).from_(rows).where(key == given(key)), row

    @classmethod
    def _type(cls, field: Field) -> str:
        name = field.field_type
        return cls._TYPES.get(name) or database.get_context_options()["field_types"].get(name, name)

    @staticmethod
    def least(*values) -> Node:
        return fn.LEAST(*values)

    @staticmethod
    def greatest(*values) -> Node:
        return fn.GREATEST(*values)

    @staticmethod
    def micros(column: Node) -> Node:
        epoch = fn.EXTRACT(NodeList((SQL("EPOCH FROM"), column)))
        return Cast(epoch * SQL("1000000"), "BIGINT")


_Dialect = type[_SQLite] | type[_Postgres]


def _dialect() -> _Dialect:
    return _Postgres if is_postgres() else _SQLite


@functools.cache
def _compiled(build: Callable[[_Dialect], Query], dialect: _Dialect) -> _Compiled:
    """The statement ``build`` makes, in the text of ``dialect``: built and compiled once."""
    return _compile(build(dialect))


def _compile(node: Node) -> _Compiled:
    sql, params = database.get_sql_context().sql(node).query()
    return _Compiled(sql, tuple(p.index for p in params))


def _execute(build: Callable[[_Dialect], Query], row: Sequence):
    statement = _compiled(build, _dialect())
    return database.execute_sql(statement.sql, statement.params(row))


class StaleHeartbeat(Exception):
    """The heartbeat is not later than the last accepted one: a duplicate or a replay, whose
    time is then already counted (``stored``), or one that arrived out of order and never
    can be."""

    def __init__(self, last: datetime, stored: bool):
        super().__init__(f"not later than the last accepted heartbeat at {last.isoformat()}")
        self.last = last
        self.stored = stored


class UnknownWorker(Exception):
    pass


class KeyReplaced(Exception):
    """The heartbeat was verified with a key the worker no longer has (collector/uptime/keys.py)."""


class TooSoon(Exception):
    """The heartbeat follows the last one stored by less than the minimum interval: one
    heartbeat per interval is stored for a wallet, however many are sent."""

    def __init__(self, allowed_from: datetime):
        super().__init__(f"not before {allowed_from.isoformat()}")
        self.allowed_from = allowed_from


# What a heartbeat did to its worker's window.
Action = Literal["opened", "extended", "flushed", "reopened", "docker_unavailable", "not_credited"]


@dataclass(frozen=True)
class Applied:
    action: Action
    window: OpenWindow | None  # None while Docker is unavailable
    counted: timedelta  # how much the worker's uptime grew by
    credits_millis: int  # what that uptime earned (collector/uptime/credits.py)
    receipt: bytes | None = None  # the signed receipt (JSON) of a heartbeat that moved a window


# What signs a credited heartbeat's receipt (collector/uptime/receipts.py): given the
# heartbeat, the window it moved, the uptime it counted, the credits that earned and the time
# it was counted at; the receipt as JSON, or None.
Signer = Callable[[Heartbeat, OpenWindow, timedelta, int, datetime], bytes | None]


def apply_heartbeat(
    heartbeat: Heartbeat,
    *,
    gap: timedelta,
    now: datetime,
    create_worker: bool = False,
    key: str | None = None,
    vouching: Vouching | None = None,
    min_interval: timedelta = timedelta(0),
    receipts: Signer | None = None,
) -> Applied:
    """Apply one accepted heartbeat: the window step and the container list, atomically.
    With ``key``, only while the worker's enrolled key is still that one."""
    [result] = apply_heartbeats(
        [(heartbeat, key)],
        gap=gap,
        now=now,
        create_worker=create_worker,
        vouching=vouching,
        min_interval=min_interval,
        receipts=receipts,
    )
    if isinstance(result, Exception):
        raise result
    return result


def apply_heartbeats(
    heartbeats: Sequence[tuple[Heartbeat, str | None]],
    *,
    gap: timedelta,
    now: datetime,
    create_worker: bool = False,
    vouching: Vouching | None = None,
    min_interval: timedelta = timedelta(0),
    capacity_bounds: capacity.Bounds | None = None,
    receipts: Signer | None = None,
) -> list[Applied | Exception]:
    """Apply heartbeats, each with the key it was verified with (or None), in one
    transaction, each one's step exactly as it would be alone: in rounds of distinct
    workers (a worker's second heartbeat in the next round, after its first is written).
    Its result, in order: what was applied, or the exception that refused it
    (StaleHeartbeat, UnknownWorker, KeyReplaced, TooSoon), a refused heartbeat writing nothing.
    With ``vouching`` (collector/uptime/vouching.py), a heartbeat whose time the collector cannot
    vouch for is stored but credits nothing; without it (the algorithm's own tests), every
    heartbeat is credited. A heartbeat less than ``min_interval`` after the worker's last
    one is refused. With ``capacity_bounds`` (the operator's, collector/uptime/capacity.py), a
    heartbeat earns at its worker's capacity, which it may change; without them, at what it
    reports. With ``receipts``, a heartbeat that moves a window is signed for, in the same
    transaction, and its window keeps that receipt (the last stands for the window).
    The worker rows are locked in address order, and so are the windows after them, so
    groups of other processes and nodes (and the sweeper) wait for each other and never
    deadlock."""
    results: list[Applied | Exception | None] = [None] * len(heartbeats)
    pending = list(enumerate(heartbeats))
    with database.atomic():
        verdicts = vouching.judge([h.timestamp for h, _ in heartbeats], now) if vouching else None
        rules = _Rules(gap, now, verdicts, min_interval, capacity_bounds, receipts)
        if create_worker:
            Worker.insert_many(
                [
                    {"wallet_address": a, "created_at": now}
                    for a in sorted({h.wallet for h, _ in heartbeats})
                ]
            ).on_conflict_ignore().execute()
        while pending:
            this_round, later, seen = [], [], set()
            for index, (heartbeat, key) in pending:
                queue = later if heartbeat.wallet in seen else this_round
                queue.append((index, (heartbeat, key)))
                seen.add(heartbeat.wallet)
            addresses = sorted(seen)
            workers = _locked_workers(addresses)
            windows = _locked_windows(addresses)
            writes = _Writes()
            for index, (heartbeat, key) in this_round:
                address = heartbeat.wallet
                try:
                    results[index] = _step(
                        heartbeat,
                        key,
                        workers.get(address),
                        windows.get(address),
                        writes,
                        rules,
                    )
                except (UnknownWorker, KeyReplaced, StaleHeartbeat, TooSoon) as exc:
                    results[index] = exc
            writes.run()
            pending = later
    return results


@dataclass(frozen=True)
class _Rules:
    gap: timedelta
    now: datetime
    verdicts: Verdicts | None  # None: every heartbeat is credited
    min_interval: timedelta
    capacity_bounds: capacity.Bounds | None = None  # None: credited as reported
    receipts: Signer | None = None  # None: no receipts


def _step(
    heartbeat: Heartbeat,
    key: str | None,
    worker: Worker | None,
    window: OpenWindow | None,
    writes: "_Writes",
    rules: _Rules,
) -> Applied:
    """One heartbeat's step, its worker and open window locked. The frequent writes (a
    window extended, the metrics point, the worker row) go to ``writes``, which runs them
    for the whole group; the rarer ones run here."""
    ts, gap, now = heartbeat.timestamp, rules.gap, rules.now
    if worker is None:
        raise UnknownWorker(heartbeat.wallet)
    # A key enrolled since an unsigned heartbeat was read counts as a replaced one too: it
    # is authenticated again, and refused for not being signed.
    if worker.public_key != key:
        raise KeyReplaced(heartbeat.wallet)
    if worker.last_heartbeat_at is not None and ts <= worker.last_heartbeat_at:
        raise StaleHeartbeat(worker.last_heartbeat_at, _counted(worker, ts))
    if worker.last_heartbeat_at is not None and ts - worker.last_heartbeat_at < rules.min_interval:
        raise TooSoon(worker.last_heartbeat_at + rules.min_interval)

    counted = timedelta(0)
    credited = rules.verdicts is None or rules.verdicts.vouches(worker, ts)
    docker_available = heartbeat.agent.dockerAvailable if heartbeat.agent else None
    if not credited:
        # Evidence only: no window moves, and the state Docker was last seen in stays.
        action, docker_available = "not_credited", worker.docker_available
    elif _docker_down(heartbeat):
        _record_docker_outage(worker, window, ts, gap)
        action, window = "docker_unavailable", None
    elif window is None:
        action, window, counted = _open(worker, ts, gap)
    elif ts - window.end_time > gap:
        _record(window)
        window.start_time = window.end_time = ts
        window.save()
        action = "flushed"
    else:
        counted = ts - window.end_time
        window.end_time = ts
        action = "extended"

    if credited and worker.docker_available is False and not _docker_down(heartbeat):
        _end_docker_outage(worker, ts, gap)
    digest = _containers(worker, heartbeat, writes)
    rate = capacity.rate(heartbeat, worker, rules.capacity_bounds, now)
    earned = credits.earned_millis(rate, counted)
    writes.metric(_metric(worker, heartbeat, earned))
    receipt = None
    if rules.receipts is not None and window is not None and credited:
        receipt = rules.receipts(heartbeat, window, counted, earned, now)
    if action == "extended":
        writes.extend(ts, worker.wallet_address, receipt)
    elif receipt is not None:
        # A window opened, reopened or flushed here: rare beside the extensions.
        OpenWindow.update(receipt=receipt.decode()).where(
            OpenWindow.worker == worker.wallet_address
        ).execute()
    agent, system = heartbeat.agent, heartbeat.system
    writes.worker(
        (
            worker.wallet_address,
            ts,
            now,
            agent.hostname if agent and agent.hostname else worker.hostname,
            agent.version if agent and agent.version else worker.agent_version,
            docker_available,
            heartbeat.tailscale_ip,
            # Facts a heartbeat leaves out stay as the last one that had them said.
            _reported(system, "cpuCores", worker.cpu_cores),
            _reported(system, "ramTotalGb", worker.ram_total_gb),
            _reported(system, "storageTotalGb", worker.storage_total_gb),
            earned,
            digest,
            heartbeat.container_total,
        )
    )
    return Applied(action, window, counted, earned, receipt)


def _reported(system, name: str, previous):
    value = getattr(system, name) if system is not None else None
    return previous if value is None else value


def _metric(worker: Worker, heartbeat: Heartbeat, earned: int) -> tuple:
    system = heartbeat.system
    facts = (
        (
            system.cpuCores,
            system.cpuUsagePercent,
            system.ramTotalGb,
            system.ramUsedGb,
            system.storageTotalGb,
            system.storageUsedGb,
        )
        if system is not None
        else (None,) * 6
    )
    return (
        worker.wallet_address,
        heartbeat.timestamp,
        *facts,
        heartbeat.container_total,
        earned,
    )


# --- the statements of every heartbeat ----------------------------------------------------------
#
# Each runs once for a whole group of heartbeats (on PostgreSQL; SQLite writes row by row),
# compiled once. The rarer steps (opening, flushing, Docker outages) build theirs as they go.

_WORKER_FIELDS = tuple(Worker.select().selected_columns)
_WINDOW_FIELDS = (OpenWindow.worker, OpenWindow.start_time, OpenWindow.end_time)
# A window as it becomes a record: with its receipt, read only then (never per heartbeat).
_MOVED = (*_WINDOW_FIELDS, OpenWindow.receipt)
_INTO = (UptimeRecord.worker, UptimeRecord.time_from, UptimeRecord.time_to, UptimeRecord.receipt)
# The rows the writes take, key first, in the order _step and _metric give them.
_EXTEND = _Write((OpenWindow.worker, OpenWindow.end_time, OpenWindow.receipt), update=True)
_METRIC = _Write(
    (
        WorkerMetric.worker,
        WorkerMetric.timestamp,
        WorkerMetric.cpu_cores,
        WorkerMetric.cpu_usage_percent,
        WorkerMetric.ram_total_gb,
        WorkerMetric.ram_used_gb,
        WorkerMetric.storage_total_gb,
        WorkerMetric.storage_used_gb,
        WorkerMetric.container_count,
        WorkerMetric.credits_millis,
    )
)
_CONTAINER = _Write(
    (
        WorkerContainer.worker,
        WorkerContainer.container_name,
        WorkerContainer.port,
        WorkerContainer.container_id,
        WorkerContainer.image,
        WorkerContainer.state,
        WorkerContainer.health,
        WorkerContainer.cpu_percent,
        WorkerContainer.mem_usage_mb,
    )
)
_WORKER = _Write(
    (
        Worker.wallet_address,
        Worker.last_heartbeat_at,
        Worker.last_seen_at,
        Worker.hostname,
        Worker.agent_version,
        Worker.docker_available,
        Worker.tailscale_ip,
        Worker.cpu_cores,
        Worker.ram_total_gb,
        Worker.storage_total_gb,
        Worker.credits_millis,
        Worker.containers_digest,
        Worker.container_total,
    ),
    update=True,
    added=Worker.credits_millis,
)


# Locked in address order (see apply_heartbeats).
def _select_workers(d: _Dialect) -> Query:
    query = Worker.select(*_WORKER_FIELDS).where(d.one_of(Worker.wallet_address, 0))
    return locked(query.order_by(Worker.wallet_address))


def _select_windows(d: _Dialect) -> Query:
    query = OpenWindow.select(*_WINDOW_FIELDS).where(d.one_of(OpenWindow.worker, 0))
    return locked(query.order_by(OpenWindow.worker))


def _delete_containers(d: _Dialect) -> Query:
    return WorkerContainer.delete().where(d.one_of(WorkerContainer.worker, 0))


_TIME = UTCDateTimeField()


def _db_values(params) -> list:
    # Times stored as every UTCDateTimeField stores them.
    return [_TIME.db_value(v) if isinstance(v, datetime) else v for v in params]


def _locked_workers(addresses: list[str]) -> dict[str, Worker]:
    workers = {}
    for row in _execute(_select_workers, (_dialect().list_value(addresses),)):
        values = {f.name: f.python_value(v) for f, v in zip(_WORKER_FIELDS, row, strict=True)}
        workers[values["wallet_address"]] = Worker(**values)
    return workers


def _locked_windows(addresses: list[str]) -> dict[str, OpenWindow]:
    windows = {}
    for address, start, end in _execute(_select_windows, (_dialect().list_value(addresses),)):
        windows[address] = OpenWindow(
            worker=address,
            start_time=OpenWindow.start_time.python_value(start),
            end_time=OpenWindow.end_time.python_value(end),
        )
    return windows


class _Writes:
    """The writes every heartbeat of a group makes, run together at the end: one statement
    each on PostgreSQL, whatever the group's size."""

    def __init__(self) -> None:
        self.extends: list[list] = []
        self.metrics: list[list] = []
        self.workers: list[list] = []
        self.replaced: list[str] = []  # workers whose container list is written anew
        self.containers: list[list] = []

    def extend(self, end: datetime, address: str, receipt: bytes | None) -> None:
        text = None if receipt is None else receipt.decode()
        self.extends.append(_db_values((address, end, text)))

    def metric(self, row: tuple) -> None:
        self.metrics.append(_db_values(row))

    def worker(self, row: tuple) -> None:
        self.workers.append(_db_values(row))

    def replace_containers(self, address: str, rows: list[tuple]) -> None:
        self.replaced.append(address)
        self.containers.extend([address, *row] for row in rows)

    def run(self) -> None:
        d = _dialect()
        if self.replaced:
            _execute(_delete_containers, (d.list_value(self.replaced),))
        for write, rows in (
            (_CONTAINER, self.containers),
            (_EXTEND, self.extends),
            (_METRIC, self.metrics),
            (_WORKER, self.workers),
        ):
            if rows:
                d.write(write, rows)


def _docker_down(heartbeat: Heartbeat) -> bool:
    return heartbeat.agent is not None and heartbeat.agent.dockerAvailable is False


def _record_docker_outage(
    worker: Worker, window: OpenWindow | None, ts: datetime, gap: timedelta
) -> None:
    """Close the window at its last serving heartbeat and count the time from there (or from
    this heartbeat, after a silence) as a Docker outage, extending the one running."""
    if window is not None:
        _record(window)
        window.delete_instance()
    last = worker.last_heartbeat_at
    recent = last is not None and ts - last <= gap
    if recent and worker.docker_available is False and _extend_docker_outage(worker, ts):
        return
    start = last if recent else ts
    DockerOutage.create(worker=worker, time_from=start, time_to=ts)


def _end_docker_outage(worker: Worker, ts: datetime, gap: timedelta) -> None:
    # Docker was down at the last heartbeat and is back at this one: the outage lasted
    # until now, unless the agent went silent in between (the silence is its own cause).
    if worker.last_heartbeat_at is not None and ts - worker.last_heartbeat_at <= gap:
        _extend_docker_outage(worker, ts)


def _extend_docker_outage(worker: Worker, ts: datetime) -> bool:
    latest = (
        DockerOutage.select()
        .where(DockerOutage.worker == worker)
        .order_by(DockerOutage.time_to.desc())
        .first()
    )
    if latest is None or latest.time_to != worker.last_heartbeat_at:
        return False
    latest.time_to = ts
    latest.save()
    return True


def _counted(worker: Worker, ts: datetime) -> bool:
    """Whether the worker's uptime already covers ``ts``: its last heartbeat, its open window
    or one of its records."""
    if ts == worker.last_heartbeat_at:
        return True
    window = OpenWindow.select().where(
        (OpenWindow.worker == worker) & (OpenWindow.start_time <= ts) & (OpenWindow.end_time >= ts)
    )
    record = UptimeRecord.select().where(
        (UptimeRecord.worker == worker)
        & (UptimeRecord.time_from <= ts)
        & (UptimeRecord.time_to >= ts)
    )
    return window.exists() or record.exists()


def _record(window: OpenWindow) -> None:
    """Close the window into an uptime record, with its receipt (read here, in the database,
    rather than with every heartbeat's window)."""
    moved = OpenWindow.select(*_MOVED).where(OpenWindow.worker == window.worker_address)
    UptimeRecord.insert_from(moved, _INTO).execute()


def _open(worker: Worker, ts: datetime, gap: timedelta) -> tuple[str, OpenWindow, timedelta]:
    # The sweeper may have closed the window while the worker's heartbeats were held up (its
    # agent spools them through an outage and replays them late). A heartbeat that follows
    # the last record within the gap continues that window, so an outage of the collector
    # costs no uptime and records never overlap.
    last = (
        UptimeRecord.select()
        .where(UptimeRecord.worker == worker)
        .order_by(UptimeRecord.time_to.desc())
        .first()
    )
    # Only a window no heartbeat followed: after one saying Docker was down, the time since
    # the record is an outage, not uptime.
    if last is not None and ts - last.time_to <= gap and not _followed(worker, last):
        start, counted = last.time_from, ts - last.time_to
        last.delete_instance()
        window = OpenWindow.create(worker=worker, start_time=start, end_time=ts)
        return "reopened", window, counted
    return "opened", OpenWindow.create(worker=worker, start_time=ts, end_time=ts), timedelta(0)


def _followed(worker: Worker, record: UptimeRecord) -> bool:
    return worker.last_heartbeat_at is not None and worker.last_heartbeat_at > record.time_to


def _containers(worker: Worker, heartbeat: Heartbeat, writes: _Writes) -> str:
    """The heartbeat's container list, written (with the group's writes) unless it is the
    one stored; its digest."""
    rows = [
        (
            c.containerName,
            c.port,
            c.id,
            c.image,
            c.state,
            c.health,
            c.cpuPercent,
            c.memUsageMb,
        )
        for c in heartbeat.containers
    ]
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    if digest != worker.containers_digest:
        writes.replace_containers(worker.wallet_address, rows)
    return digest


def sweep(*, gap: timedelta, now: datetime) -> int:
    """Close every window silent for longer than the gap; return how many were closed.

    Set-based: the delete is the guard, so a window is closed only by the pass whose delete
    removed it, and a heartbeat that extended it first keeps it open."""
    due = OpenWindow.end_time < now - gap
    if _dialect().moves_in_one_statement:
        # One statement: exactly the deleted rows become records. The windows are locked in
        # address order, as a group of heartbeats locks them (apply_heartbeats), so neither
        # waits for the other in a cycle; a window a heartbeat extended meanwhile no longer
        # matches and stays open.
        order = OpenWindow.select(OpenWindow.worker).where(due).order_by(OpenWindow.worker)
        closed = (
            OpenWindow.delete()
            .where(due & OpenWindow.worker.in_(order.for_update()))
            .returning(*_MOVED)
            .cte("closed")
        )
        moved = Select([closed], [getattr(closed.c, f.column_name) for f in _MOVED])
        insert = UptimeRecord.insert_from(moved, _INTO).with_cte(closed).returning()
        return database.execute_sql(*insert.sql()).rowcount
    # SQLite: the IMMEDIATE transaction holds the write lock across both statements.
    with database.atomic():
        insert = UptimeRecord.insert_from(OpenWindow.select(*_MOVED).where(due), _INTO)
        inserted = database.execute_sql(*insert.sql()).rowcount
        deleted = OpenWindow.delete().where(due).execute()
        if inserted != deleted:
            raise RuntimeError(f"sweep recorded {inserted} windows but closed {deleted}")
    return deleted


class Window(Answer):
    """A worker's open window: from the first heartbeat of its run to the last."""

    startTime: Timestamp  # noqa: N815 - the API's names
    endTime: Timestamp  # noqa: N815

    @classmethod
    def of(cls, window: OpenWindow | None) -> "Window | None":
        if window is None:
            return None
        return cls(
            startTime=format_timestamp(window.start_time),
            endTime=format_timestamp(window.end_time),
        )


class Record(Answer):
    """A closed window."""

    timeFrom: Timestamp  # noqa: N815
    timeTo: Timestamp  # noqa: N815


class RangeUptime(Answer):
    records: Annotated[
        list[Record],
        Meta(description="A page of the closed windows in the range, in time order"),
    ]
    recordCount: Annotated[  # noqa: N815
        int, Meta(ge=0, description="every record in the range, on all pages")
    ]
    next: Annotated[
        Timestamp | None,
        Meta(description="pass as after for the next page of records; null on the last"),
    ]
    openWindow: Window | None  # noqa: N815
    totalSeconds: Annotated[float, Meta(ge=0)]  # noqa: N815
    uptimeFraction: Annotated[float, Meta(ge=0, le=1)]  # noqa: N815


# Records one uptime answer lists at most (a worker flapping for a year has thousands); the
# totals always count every record in the range.
RECORDS_PAGE = 100
MAX_RECORDS_PAGE = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def uptime(
    worker: Worker,
    start: datetime,
    end: datetime,
    *,
    after: datetime | None = None,
    limit: int = RECORDS_PAGE,
) -> RangeUptime:
    """The seconds of uptime inside [start, end] (each window clipped to it), summed by the
    database over every record in the range, with the open window; and a page of those
    records in time order: at most ``limit``, those ending after ``after`` (the previous
    page's ``next``). A worker's records never overlap, so their ends are in the same order
    as their starts, and the (worker_address, time_to) index reads exactly the page."""
    in_range = (
        (UptimeRecord.worker == worker)
        & (UptimeRecord.time_to >= start)
        & (UptimeRecord.time_from <= end)
    )
    query = UptimeRecord.select().where(in_range).order_by(UptimeRecord.time_to, UptimeRecord.id)
    if after is not None:
        query = query.where(UptimeRecord.time_to > after)
    records, more = first_page(query.limit, limit)
    count, micros = _recorded(worker, start, end)
    window = OpenWindow.get_or_none(OpenWindow.worker == worker)
    if window is not None:
        clipped = (max(window.start_time, start), min(window.end_time, end))
        micros += max(0, _micros_of(clipped[1]) - _micros_of(clipped[0]))
    total = micros / 1_000_000
    length = (end - start).total_seconds()
    return RangeUptime(
        records=[
            Record(timeFrom=format_timestamp(r.time_from), timeTo=format_timestamp(r.time_to))
            for r in records
        ],
        recordCount=count,
        next=format_timestamp(records[-1].time_to) if more else None,
        openWindow=Window.of(window),
        totalSeconds=total,
        uptimeFraction=round(total / length, 6) if length > 0 else 0.0,
    )


def _micros_of(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def _micros(column: str) -> str:
    """A stored time as whole microseconds since 1970, in SQL: exact on both databases."""
    sql, _ = database.get_sql_context().sql(_dialect().micros(SQL(column))).query()
    return sql


micros = _micros


def _recorded(worker: Worker, start: datetime, end: datetime) -> tuple[int, int]:
    """How many of the worker's records overlap [start, end], and their microseconds inside
    it: one aggregate over the index range, however many records there are."""
    d = _dialect()
    inside = d.least(d.micros(UptimeRecord.time_to), _micros_of(end)) - d.greatest(
        d.micros(UptimeRecord.time_from), _micros_of(start)
    )
    query = UptimeRecord.select(fn.COUNT(SQL("*")), fn.COALESCE(fn.SUM(inside), 0)).where(
        (UptimeRecord.worker == worker)
        & (UptimeRecord.time_to >= start)
        & (UptimeRecord.time_from <= end)
    )
    count, total = database.execute_sql(*query.sql()).fetchone()
    return count, int(total)
