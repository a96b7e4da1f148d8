"""collector/store/migrations.py: versioned schema migrations, on an empty database of each
backend."""

from datetime import UTC, datetime

import pytest

from collector.store import migrations
from collector.store.migrations import LATEST_VERSION, MIGRATIONS, Migration
from collector.store.models import (
    CapacityChange,
    CollectorKeyRecord,
    CollectorRun,
    CreditDay,
    DockerOutage,
    EnrollmentChallenge,
    EnrollmentToken,
    OpenWindow,
    Payment,
    Payout,
    Project,
    RateLimit,
    SignInChallenge,
    SweeperLease,
    UptimeRecord,
    WalletSession,
    Worker,
    WorkerContainer,
    WorkerMetric,
)
from tests.factories import at_once, connected

MODELS = [
    Project,
    Payment,
    Worker,
    UptimeRecord,
    OpenWindow,
    WorkerContainer,
    WorkerMetric,
    EnrollmentToken,
    SweeperLease,
    CollectorRun,
    DockerOutage,
    CreditDay,
    Payout,
    EnrollmentChallenge,
    RateLimit,
    CapacityChange,
    SignInChallenge,
    WalletSession,
    CollectorKeyRecord,
]
VERSION_1_TABLES = {"projects", "payments", "workers", "worker_uptime_records"}
A = "0x" + "a" * 40
B = "0x" + "b" * 40
UINT256_MAX = str(2**256 - 1)


@pytest.fixture
def empty_db(empty_database_url):
    with connected(empty_database_url) as database:
        yield database


def versions(database) -> list[int]:
    cursor = database.execute_sql("SELECT version FROM schema_version ORDER BY version")
    return [row[0] for row in cursor.fetchall()]


def tables(database) -> set[str]:
    """The schema's tables, without SQLite's own bookkeeping (sqlite_sequence)."""
    return {t for t in database.get_tables() if not t.startswith("sqlite_")}


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_an_empty_database_is_at_version_zero(empty_db):
    assert empty_db.get_tables() == []
    assert migrations.current_version(empty_db) == 0


def test_migrating_an_empty_database_reaches_the_latest_version(empty_db):
    applied = migrations.migrate(empty_db)
    assert [m.version for m in applied] == list(range(1, LATEST_VERSION + 1))
    assert migrations.current_version(empty_db) == LATEST_VERSION
    assert versions(empty_db) == list(range(1, LATEST_VERSION + 1))
    assert tables(empty_db) == {m._meta.table_name for m in MODELS} | {"schema_version"}


def test_migrating_again_applies_nothing(empty_db):
    migrations.migrate(empty_db)
    assert migrations.migrate(empty_db) == []
    assert migrations.current_version(empty_db) == LATEST_VERSION
    assert versions(empty_db) == list(range(1, LATEST_VERSION + 1))


def test_the_latest_schema_has_every_column_the_models_use(empty_db):
    migrations.migrate(empty_db)
    for model in MODELS:
        columns = {c.name for c in empty_db.get_columns(model._meta.table_name)}
        assert set(model._meta.columns) <= columns, model.__name__


def test_it_stops_at_the_target_version(empty_db):
    assert [m.version for m in migrations.migrate(empty_db, target=1)] == [1]
    assert migrations.current_version(empty_db) == 1
    assert tables(empty_db) == VERSION_1_TABLES | {"schema_version"}
    assert [m.version for m in migrations.migrate(empty_db)] == list(range(2, LATEST_VERSION + 1))


# The rows a version-1 database could hold, written with the SQL of that version.
VERSION_1_ROWS = [
    "INSERT INTO projects (name, url, port, status, github, replicas, creator, created_at) "
    "VALUES ('shop', 'https://shop.tassium.app', 8080, 'success', 'https://github.com/t/shop', 3, "
    "'0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', '2026-01-02 03:04:05')",
    "INSERT INTO projects (name, url, github, creator) "
    "VALUES ('blog', 'https://blog.tassium.app', 'https://github.com/t/blog', "
    "'0xbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb')",
    "INSERT INTO payments (name, amount, creator, created_at) VALUES ('invoice 1', "
    "'115792089237316195423570985008687907853269984665640564039457584007913129639935', "
    "'0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', '2026-01-03 00:00:00')",
    "INSERT INTO workers (wallet_address, created_at) "
    "VALUES ('0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', '2026-01-01 00:00:00')",
    "INSERT INTO workers (wallet_address, created_at) "
    "VALUES ('0xbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', '2026-01-01 12:00:00')",
    "INSERT INTO worker_uptime_records (worker_address, time_from, time_to) "
    "VALUES ('0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', '2026-01-01 00:00:00', "
    "'2026-01-01 06:30:00')",
    "INSERT INTO worker_uptime_records (worker_address, time_from, time_to) "
    "VALUES ('0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', '2026-01-02 00:00:00', "
    "'2026-01-02 00:00:00')",
    "INSERT INTO worker_uptime_records (worker_address, time_from, time_to) "
    "VALUES ('0xbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', '2026-01-01 12:00:00', "
    "'2026-01-01 13:00:00')",
]


def test_upgrading_keeps_every_row_and_leaves_new_columns_empty(empty_db):
    migrations.migrate(empty_db, target=1)
    for statement in VERSION_1_ROWS:
        empty_db.execute_sql(statement)

    applied = migrations.migrate(empty_db)

    assert [m.version for m in applied] == list(range(2, LATEST_VERSION + 1))
    projects = [
        (p.name, p.url, p.port, p.status, p.github, p.replicas, p.creator)
        for p in Project.select().order_by(Project.name)
    ]
    assert projects == [
        ("blog", "https://blog.tassium.app", 3000, "pending", "https://github.com/t/blog", 1, B),
        ("shop", "https://shop.tassium.app", 8080, "success", "https://github.com/t/shop", 3, A),
    ]
    assert Project.get(Project.name == "shop").created_at == at(2026, 1, 2, 3, 4, 5)
    assert [(p.name, p.amount, p.creator, p.created_at) for p in Payment.select()] == [
        ("invoice 1", UINT256_MAX, A, at(2026, 1, 3))
    ]
    workers = list(Worker.select().order_by(Worker.wallet_address))
    assert [(w.wallet_address, w.created_at) for w in workers] == [
        (A, at(2026, 1, 1)),
        (B, at(2026, 1, 1, 12)),
    ]
    for worker in workers:
        assert (
            worker.public_key,
            worker.enrolled_at,
            worker.hostname,
            worker.agent_version,
            worker.docker_available,
            worker.last_heartbeat_at,
            worker.last_seen_at,
        ) == (None,) * 7
    records = UptimeRecord.select().order_by(UptimeRecord.worker, UptimeRecord.time_from)
    assert [(r.worker_address, r.time_from, r.time_to) for r in records] == [
        (A, at(2026, 1, 1), at(2026, 1, 1, 6, 30)),
        (A, at(2026, 1, 2), at(2026, 1, 2)),
        (B, at(2026, 1, 1, 12), at(2026, 1, 1, 13)),
    ]
    for model in (OpenWindow, WorkerContainer, EnrollmentToken, SweeperLease):
        assert model.select().count() == 0


def test_upgraded_rows_work_with_the_new_tables(empty_db):
    migrations.migrate(empty_db, target=1)
    for statement in VERSION_1_ROWS:
        empty_db.execute_sql(statement)
    migrations.migrate(empty_db)

    OpenWindow.create(worker=A, start_time=at(2026, 1, 3), end_time=at(2026, 1, 3, 1))
    WorkerContainer.create(worker=A, container_name="web")
    Worker.delete().where(Worker.wallet_address == A).execute()

    # The old foreign key and the new ones cascade from the old row.
    assert UptimeRecord.select().where(UptimeRecord.worker == A).count() == 0
    assert OpenWindow.select().count() == 0
    assert WorkerContainer.select().count() == 0
    assert UptimeRecord.select().count() == 1


def test_a_failing_migration_leaves_nothing_behind(empty_db, monkeypatch):
    migrations.migrate(empty_db)
    broken = Migration(
        LATEST_VERSION + 1,
        "a step that fails half-way",
        ("CREATE TABLE half_done (id INTEGER)", "ALTER TABLE no_such_table ADD COLUMN x TEXT"),
    )
    monkeypatch.setattr(migrations, "MIGRATIONS", (*MIGRATIONS, broken))

    with pytest.raises(Exception, match="no_such_table"):
        migrations.migrate(empty_db, target=broken.version)

    assert "half_done" not in tables(empty_db)
    assert migrations.current_version(empty_db) == LATEST_VERSION


# --- two processes at once ----------------------------------------------------------------------


def _migrate_in_another_process(url, barrier, results) -> None:
    """Run in a child process: connect, wait for the others, then migrate."""
    try:
        with connected(url) as database:
            barrier.wait(timeout=30)
            applied = migrations.migrate(database)
        results.put(("ok", [m.version for m in applied]))
    except Exception as exc:  # reported to the test instead of lost in the child's stderr
        results.put(("error", repr(exc)))


def test_processes_migrating_at_once_apply_each_version_exactly_once(empty_database_url):
    processes = 4
    outcomes = at_once(_migrate_in_another_process, empty_database_url, processes)

    assert [status for status, _ in outcomes] == ["ok"] * processes, outcomes
    applied = sorted(version for _, done in outcomes for version in done)
    assert applied == list(range(1, LATEST_VERSION + 1))
    with connected(empty_database_url) as database:
        assert migrations.current_version(database) == LATEST_VERSION
        assert versions(database) == list(range(1, LATEST_VERSION + 1))
