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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from peewee import __exception_wrapper__ as peewee_errors

from collector import capacity, credits
from collector.db import UTCDateTimeField, database, first_page, is_postgres
from collector.models import (
    DockerOutage,
    OpenWindow,
    UptimeRecord,
    Worker,
)
from collector.vouching import Verdicts, Vouching
from protocol.heartbeat import Heartbeat
from protocol.times import format_timestamp


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
    """The heartbeat was verified with a key the worker no longer has (collector/keys.py)."""


class TooSoon(Exception):
    """The heartbeat follows the last one stored by less than the minimum interval: one
    heartbeat per interval is stored for a wallet, however many are sent."""

    def __init__(self, allowed_from: datetime):
        super().__init__(f"not before {allowed_from.isoformat()}")
        self.allowed_from = allowed_from


@dataclass(frozen=True)
class Applied:
    # opened | extended | flushed | reopened | docker_unavailable | not_credited
    action: str
    window: OpenWindow | None  # None while Docker is unavailable
    counted: timedelta  # how much the worker's uptime grew by
    credits_millis: int  # what that uptime earned (collector/credits.py)


def apply_heartbeat(
    heartbeat: Heartbeat,
    *,
    gap: timedelta,
    now: datetime,
    create_worker: bool = False,
    key: str | None = None,
    vouching: Vouching | None = None,
    min_interval: timedelta = timedelta(0),
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
) -> list[Applied | Exception]:
    """Apply heartbeats, each with the key it was verified with (or None), in one
    transaction, each one's step exactly as it would be alone: in rounds of distinct
    workers (a worker's second heartbeat in the next round, after its first is written).
    Its result, in order: what was applied, or the exception that refused it
    (StaleHeartbeat, UnknownWorker, KeyReplaced, TooSoon), a refused heartbeat writing nothing.
    With ``vouching`` (collector/vouching.py), a heartbeat whose time the collector cannot
    vouch for is stored but credits nothing; without it (the algorithm's own tests), every
    heartbeat is credited. A heartbeat less than ``min_interval`` after the worker's last
    one is refused. With ``capacity_bounds`` (the operator's, collector/capacity.py), a
    heartbeat earns at its worker's capacity, which it may change; without them, at what it
    reports.
    The worker rows are locked in address order, and so are the windows after them, so
    groups of other processes and nodes (and the sweeper) wait for each other and never
    deadlock."""
    results: list[Applied | Exception | None] = [None] * len(heartbeats)
    pending = list(enumerate(heartbeats))
    with database.atomic():
        verdicts = vouching.judge([h.timestamp for h, _ in heartbeats], now) if vouching else None
        rules = _Rules(gap, now, verdicts, min_interval, capacity_bounds)
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
        UptimeRecord.create(worker=worker, time_from=window.start_time, time_to=window.end_time)
        window.start_time = window.end_time = ts
        window.save()
        action = "flushed"
    else:
        counted = ts - window.end_time
        window.end_time = ts
        writes.extend(ts, worker.wallet_address)
        action = "extended"

    if credited and worker.docker_available is False and not _docker_down(heartbeat):
        _end_docker_outage(worker, ts, gap)
    digest = _containers(worker, heartbeat, writes)
    rate = capacity.rate(heartbeat, worker, rules.capacity_bounds, now)
    earned = credits.earned_millis(rate, counted)
    writes.metric(_metric(worker, heartbeat, earned))
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
    return Applied(action, window, counted, earned)


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


# --- the statements of every heartbeat, composed once -----------------------------------------
#
# Composing SQL through Peewee's query builder cost more CPU than anything else a heartbeat
# does; the statements every heartbeat runs are written here once per database kind, and
# only their parameters change, each running once for a whole group of heartbeats. The
# rarer steps (opening, flushing, Docker outages) keep the query builder.

_WORKER_FIELDS = Worker._meta.sorted_fields
_METRIC_COLUMNS = (
    "worker_address, timestamp, cpu_cores, cpu_usage_percent, ram_total_gb, ram_used_gb, "
    "storage_total_gb, storage_used_gb, container_count, credits_millis"
)
_CONTAINER_COLUMNS = (
    "worker_address, container_name, port, container_id, image, state, health, cpu_percent, "
    "mem_usage_mb"
)
# The worker row's columns a heartbeat sets, in the order _step gives them; credits_millis
# is added to.
_WORKER_UPDATE = (
    ("last_heartbeat_at", "timestamp"),
    ("last_seen_at", "timestamp"),
    ("hostname", "varchar"),
    ("agent_version", "varchar"),
    ("docker_available", "boolean"),
    ("tailscale_ip", "varchar"),
    ("cpu_cores", "integer"),
    ("ram_total_gb", "double precision"),
    ("storage_total_gb", "double precision"),
    ("credits_millis", "bigint"),
    ("containers_digest", "varchar"),
    ("container_total", "integer"),
)


@functools.cache
def _statements(postgres: bool) -> dict[str, str]:
    # Our own text only (column names, the lock clause): every value is a parameter. On
    # PostgreSQL a write covers the whole group (a VALUES list of ``_row`` as long as it);
    # SQLite, in the process, runs the one-row statement for each (executemany).
    worker_columns = ", ".join(f.column_name for f in _WORKER_FIELDS)
    if postgres:
        columns = ", ".join(c for c, _ in _WORKER_UPDATE)
        # Locked in address order (see apply_heartbeats), NO KEY as db.locked() does.
        return {
            "workers": f"SELECT {worker_columns} FROM workers WHERE wallet_address = ANY(%s) "  # noqa: S608
            "ORDER BY wallet_address FOR NO KEY UPDATE",
            "windows": "SELECT worker_address, start_time, end_time FROM open_windows "
            "WHERE worker_address = ANY(%s) ORDER BY worker_address FOR NO KEY UPDATE",
            "delete_containers": "DELETE FROM worker_containers WHERE worker_address = ANY(%s)",
            "insert_containers": f"INSERT INTO worker_containers ({_CONTAINER_COLUMNS}) VALUES %s",  # noqa: S608
            "insert_containers_row": "(" + ", ".join(["%s"] * 9) + ")",
            "extend": "UPDATE open_windows AS o SET end_time = v.end_time "
            "FROM (VALUES %s) AS v(end_time, worker_address) "
            "WHERE o.worker_address = v.worker_address",
            "extend_row": "(%s::timestamp, %s)",
            "insert_metric": f"INSERT INTO worker_metrics ({_METRIC_COLUMNS}) VALUES %s",  # noqa: S608
            "insert_metric_row": "(" + ", ".join(["%s"] * 10) + ")",
            "update_worker": "UPDATE workers AS w SET "  # noqa: S608
            + ", ".join(
                f"{c} = w.{c} + v.{c}" if c == "credits_millis" else f"{c} = v.{c}"
                for c, _ in _WORKER_UPDATE
            )
            + f" FROM (VALUES %s) AS v(wallet_address, {columns}) "
            "WHERE w.wallet_address = v.wallet_address",
            "update_worker_row": "(%s, "
            + ", ".join(f"%s::{kind}" for _, kind in _WORKER_UPDATE)
            + ")",
        }
    return {
        "workers": f"SELECT {worker_columns} FROM workers WHERE wallet_address IN ({{}})",  # noqa: S608
        "windows": "SELECT worker_address, start_time, end_time FROM open_windows "
        "WHERE worker_address IN ({})",
        "delete_containers": "DELETE FROM worker_containers WHERE worker_address IN ({})",
        "insert_containers": f"INSERT INTO worker_containers ({_CONTAINER_COLUMNS}) "  # noqa: S608
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        "extend": "UPDATE open_windows SET end_time = ? WHERE worker_address = ?",
        "insert_metric": f"INSERT INTO worker_metrics ({_METRIC_COLUMNS}) "  # noqa: S608
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        "update_worker": "UPDATE workers SET "  # noqa: S608
        + ", ".join(
            f"{c} = {c} + ?" if c == "credits_millis" else f"{c} = ?" for c, _ in _WORKER_UPDATE
        )
        + " WHERE wallet_address = ?",
    }


_TIME = UTCDateTimeField()


def _db_values(params) -> list:
    # Times stored as every UTCDateTimeField stores them.
    return [_TIME.db_value(v) if isinstance(v, datetime) else v for v in params]


def _for_workers(name: str, addresses: list[str]):
    """Run statement ``name`` for a list of workers (its rows, for a SELECT)."""
    if is_postgres():
        return database.execute_sql(_statements(True)[name], (addresses,))
    marks = ", ".join("?" * len(addresses))
    return database.execute_sql(_statements(False)[name].format(marks), addresses)


def _locked_workers(addresses: list[str]) -> dict[str, Worker]:
    workers = {}
    for row in _for_workers("workers", addresses):
        values = {f.name: f.python_value(v) for f, v in zip(_WORKER_FIELDS, row, strict=True)}
        workers[values["wallet_address"]] = Worker(**values)
    return workers


def _locked_windows(addresses: list[str]) -> dict[str, OpenWindow]:
    windows = {}
    for address, start, end in _for_workers("windows", addresses):
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

    def extend(self, end: datetime, address: str) -> None:
        self.extends.append(_db_values((end, address)))

    def metric(self, row: tuple) -> None:
        self.metrics.append(_db_values(row))

    def worker(self, row: tuple) -> None:
        self.workers.append(_db_values(row))

    def replace_containers(self, address: str, rows: list[tuple]) -> None:
        self.replaced.append(address)
        self.containers.extend([address, *row] for row in rows)

    def run(self) -> None:
        # Raised as Peewee's errors, as execute_sql raises them (a lost connection must be
        # the OperationalError that answers 503).
        with peewee_errors:
            self._run()

    def _run(self) -> None:
        postgres = is_postgres()
        statements = _statements(postgres)
        if self.replaced:
            _for_workers("delete_containers", self.replaced)
        cursor = database.cursor()
        if postgres:
            # One statement a write, its VALUES list as long as the group: psycopg2 fills in
            # every row at once (execute_values would format each row in Python).
            for name, rows in (
                ("insert_containers", self.containers),
                ("extend", self.extends),
                ("insert_metric", self.metrics),
                ("update_worker", self.workers),
            ):
                if rows:
                    row = statements[name + "_row"]
                    sql = statements[name].replace("%s", ", ".join([row] * len(rows)), 1)
                    cursor.execute(sql, [value for r in rows for value in r])
            return
        cursor.executemany(statements["insert_containers"], self.containers)
        cursor.executemany(statements["extend"], self.extends)
        cursor.executemany(statements["insert_metric"], self.metrics)
        # The one-row statement takes the address last.
        cursor.executemany(statements["update_worker"], [[*r[1:], r[0]] for r in self.workers])


def _docker_down(heartbeat: Heartbeat) -> bool:
    return heartbeat.agent is not None and heartbeat.agent.dockerAvailable is False


def _record_docker_outage(
    worker: Worker, window: OpenWindow | None, ts: datetime, gap: timedelta
) -> None:
    """Close the window at its last serving heartbeat and count the time from there (or from
    this heartbeat, after a silence) as a Docker outage, extending the one running."""
    if window is not None:
        UptimeRecord.create(worker=worker, time_from=window.start_time, time_to=window.end_time)
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
    cutoff = now - gap
    if is_postgres():
        # One statement: exactly the deleted rows become records. The windows are locked in
        # address order, as a group of heartbeats locks them (apply_heartbeats), so neither
        # waits for the other in a cycle; a window a heartbeat extended meanwhile no longer
        # matches and stays open.
        cutoff_value = OpenWindow.end_time.db_value(cutoff)
        cursor = database.execute_sql(
            "WITH closed AS (DELETE FROM open_windows WHERE end_time < %s AND worker_address IN "
            "(SELECT worker_address FROM open_windows WHERE end_time < %s "
            "ORDER BY worker_address FOR UPDATE) RETURNING worker_address, start_time, end_time) "
            "INSERT INTO worker_uptime_records (worker_address, time_from, time_to) "
            "SELECT worker_address, start_time, end_time FROM closed",
            (cutoff_value, cutoff_value),
        )
        return cursor.rowcount
    # SQLite: the IMMEDIATE transaction holds the write lock across both statements.
    params = (OpenWindow.end_time.db_value(cutoff),)
    with database.atomic():
        inserted = database.execute_sql(
            "INSERT INTO worker_uptime_records (worker_address, time_from, time_to) "
            "SELECT worker_address, start_time, end_time FROM open_windows WHERE end_time < ?",
            params,
        ).rowcount
        deleted = database.execute_sql(
            "DELETE FROM open_windows WHERE end_time < ?", params
        ).rowcount
        if inserted != deleted:
            raise RuntimeError(f"sweep recorded {inserted} windows but closed {deleted}")
    return deleted


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
) -> dict:
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
    return {
        "records": [r.to_json() for r in records],
        "recordCount": count,
        "next": format_timestamp(records[-1].time_to) if more else None,
        "openWindow": window.to_json() if window is not None else None,
        "totalSeconds": total,
        "uptimeFraction": round(total / length, 6) if length > 0 else 0.0,
    }


def _micros_of(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def _micros(column: str) -> str:
    """A stored time as whole microseconds since 1970, in SQL: exact on both databases
    (SQLite keeps the text Python wrote, ``2026-11-24 21:00:00.000005``)."""
    if is_postgres():
        return f"CAST(EXTRACT(EPOCH FROM {column}) * 1000000 AS BIGINT)"
    # unixepoch() (SQLite 3.38) is 2.5 times as fast as strftime('%s') over a year of records.
    seconds = (
        f"unixepoch({column})"
        if sqlite3.sqlite_version_info >= (3, 38)
        else f"CAST(strftime('%s', {column}) AS INTEGER)"
    )
    return f"({seconds} * 1000000 + CAST(substr({column}, 21, 6) AS INTEGER))"


def _recorded(worker: Worker, start: datetime, end: datetime) -> tuple[int, int]:
    """How many of the worker's records overlap [start, end], and their microseconds inside
    it: one aggregate over the index range, however many records there are."""
    least, greatest = ("LEAST", "GREATEST") if is_postgres() else ("MIN", "MAX")
    p = database.param
    cursor = database.execute_sql(
        f"SELECT COUNT(*), COALESCE(SUM({least}({_micros('time_to')}, {p})"  # noqa: S608 - no input in the text
        f" - {greatest}({_micros('time_from')}, {p})), 0) FROM worker_uptime_records"
        f" WHERE worker_address = {p} AND time_to >= {p} AND time_from <= {p}",
        (
            _micros_of(end),
            _micros_of(start),
            worker.wallet_address,
            UptimeRecord.time_to.db_value(start),
            UptimeRecord.time_from.db_value(end),
        ),
    )
    count, micros = cursor.fetchone()
    return count, int(micros)
