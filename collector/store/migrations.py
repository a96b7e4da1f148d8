"""Versioned schema migrations, applied in order by ``tassium-collector migrate``.

Each migration is plain SQL with a few dialect words filled in, so that the schema of a
version never changes when the models do. A migration and its version row commit together,
under a lock, so two processes migrating at once apply each step exactly once.
"""

from dataclasses import dataclass

from peewee import Database

from collector.store.db import is_postgres

_DIALECT = {
    "sqlite": {
        "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "bigserial": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "float": "REAL",
        "ts": "DATETIME",
        "now": "CURRENT_TIMESTAMP",
    },
    "postgres": {
        "serial": "SERIAL PRIMARY KEY",
        "bigserial": "BIGSERIAL PRIMARY KEY",
        "float": "DOUBLE PRECISION",
        "ts": "TIMESTAMP",
        "now": "(now() AT TIME ZONE 'utc')",
    },
}

# Any fixed number serves; it only has to be the same in every collector process.
_ADVISORY_LOCK_KEY = 0x7A551A


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS = (
    Migration(
        1,
        "the plan's four tables",
        (
            """CREATE TABLE projects (
            id {serial},
            name VARCHAR(20) NOT NULL UNIQUE,
            url TEXT NOT NULL,
            port INTEGER NOT NULL DEFAULT 3000,
            status VARCHAR(10) NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'processing', 'success', 'failed')),
            github TEXT NOT NULL,
            replicas INTEGER NOT NULL DEFAULT 1,
            creator VARCHAR(64) NOT NULL,
            created_at {ts} NOT NULL DEFAULT {now})""",
            "CREATE INDEX projects_creator ON projects (creator)",
            """CREATE TABLE payments (
            id {serial},
            name VARCHAR(255) NOT NULL,
            amount VARCHAR(78) NOT NULL,
            creator VARCHAR(64) NOT NULL,
            created_at {ts} NOT NULL DEFAULT {now})""",
            "CREATE INDEX payments_creator ON payments (creator)",
            """CREATE TABLE workers (
            wallet_address VARCHAR(64) PRIMARY KEY,
            created_at {ts} NOT NULL DEFAULT {now})""",
            """CREATE TABLE worker_uptime_records (
            id {serial},
            worker_address VARCHAR(64) NOT NULL
                REFERENCES workers (wallet_address) ON DELETE CASCADE,
            time_from {ts} NOT NULL,
            time_to {ts} NOT NULL,
            CHECK (time_from <= time_to))""",
            "CREATE INDEX uptime_records_worker_time"
            " ON worker_uptime_records (worker_address, time_to)",
        ),
    ),
    Migration(
        2,
        "enrollment, open windows, containers, sweeper lease",
        (
            "ALTER TABLE workers ADD COLUMN public_key TEXT",
            "ALTER TABLE workers ADD COLUMN enrolled_at {ts}",
            "ALTER TABLE workers ADD COLUMN hostname VARCHAR(255)",
            "ALTER TABLE workers ADD COLUMN agent_version VARCHAR(255)",
            "ALTER TABLE workers ADD COLUMN docker_available BOOLEAN",
            "ALTER TABLE workers ADD COLUMN last_heartbeat_at {ts}",
            "ALTER TABLE workers ADD COLUMN last_seen_at {ts}",
            """CREATE TABLE open_windows (
            worker_address VARCHAR(64) PRIMARY KEY
                REFERENCES workers (wallet_address) ON DELETE CASCADE,
            start_time {ts} NOT NULL,
            end_time {ts} NOT NULL,
            CHECK (start_time <= end_time))""",
            "CREATE INDEX open_windows_end_time ON open_windows (end_time)",
            """CREATE TABLE worker_containers (
            id {serial},
            worker_address VARCHAR(64) NOT NULL
                REFERENCES workers (wallet_address) ON DELETE CASCADE,
            container_name VARCHAR(255) NOT NULL,
            port VARCHAR(255) NOT NULL DEFAULT '',
            container_id VARCHAR(255),
            image VARCHAR(255),
            state VARCHAR(255),
            health VARCHAR(255))""",
            "CREATE INDEX worker_containers_worker ON worker_containers (worker_address)",
            """CREATE TABLE enrollment_tokens (
            token_hash VARCHAR(64) PRIMARY KEY,
            wallet_address VARCHAR(64) NOT NULL,
            created_at {ts} NOT NULL DEFAULT {now},
            expires_at {ts} NOT NULL,
            used_at {ts})""",
            """CREATE TABLE sweeper_lease (
            name VARCHAR(32) PRIMARY KEY,
            holder VARCHAR(255) NOT NULL,
            expires_at {ts} NOT NULL)""",
        ),
    ),
    Migration(
        3,
        "what the Tassium front ends show: branches, deployer errors, machine facts, pings, "
        "credits, metrics",
        (
            "ALTER TABLE projects ADD COLUMN branch VARCHAR(255) NOT NULL DEFAULT 'main'",
            "ALTER TABLE projects ADD COLUMN error_message TEXT",
            "ALTER TABLE projects ADD COLUMN updated_at {ts}",
            "UPDATE projects SET updated_at = created_at",
            "ALTER TABLE workers ADD COLUMN tailscale_ip VARCHAR(15)",
            "ALTER TABLE workers ADD COLUMN cpu_cores INTEGER",
            "ALTER TABLE workers ADD COLUMN ram_total_gb {float}",
            "ALTER TABLE workers ADD COLUMN storage_total_gb {float}",
            "ALTER TABLE workers ADD COLUMN last_ping_at {ts}",
            # Thousandths of a credit, so that sums are exact.
            "ALTER TABLE workers ADD COLUMN credits_millis BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE worker_containers ADD COLUMN cpu_percent {float}",
            "ALTER TABLE worker_containers ADD COLUMN mem_usage_mb {float}",
            """CREATE TABLE worker_metrics (
            id {bigserial},
            worker_address VARCHAR(64) NOT NULL
                REFERENCES workers (wallet_address) ON DELETE CASCADE,
            timestamp {ts} NOT NULL,
            cpu_cores INTEGER,
            cpu_usage_percent {float},
            ram_total_gb {float},
            ram_used_gb {float},
            storage_total_gb {float},
            storage_used_gb {float},
            container_count INTEGER NOT NULL,
            credits_millis BIGINT NOT NULL)""",
            "CREATE INDEX worker_metrics_worker_time ON worker_metrics (worker_address, timestamp)",
            "CREATE INDEX worker_metrics_time ON worker_metrics (timestamp)",
        ),
    ),
    Migration(
        4,
        "reports and payouts: the collector's own liveness, Docker outages, credits by day, "
        "payouts",
        (
            # One row per serving process: the spans no row covers are the collector's outages.
            """CREATE TABLE collector_runs (
            id {serial},
            host VARCHAR(255) NOT NULL,
            pid INTEGER NOT NULL,
            started_at {ts} NOT NULL,
            alive_at {ts} NOT NULL)""",
            "CREATE INDEX collector_runs_alive ON collector_runs (alive_at)",
            # Spans in which a worker's agent said Docker was unavailable: down, and why.
            """CREATE TABLE docker_outages (
            id {serial},
            worker_address VARCHAR(64) NOT NULL
                REFERENCES workers (wallet_address) ON DELETE CASCADE,
            time_from {ts} NOT NULL,
            time_to {ts} NOT NULL)""",
            "CREATE INDEX docker_outages_worker_time ON docker_outages (worker_address, time_to)",
            # Metrics points past their retention, summed per worker and UTC day, so credits
            # of any past period stay exact.
            """CREATE TABLE worker_credit_days (
            worker_address VARCHAR(64) NOT NULL
                REFERENCES workers (wallet_address) ON DELETE CASCADE,
            day DATE NOT NULL,
            credits_millis BIGINT NOT NULL,
            PRIMARY KEY (worker_address, day))""",
            """CREATE TABLE payouts (
            id {serial},
            period VARCHAR(64) NOT NULL UNIQUE,
            period_start {ts} NOT NULL,
            period_end {ts} NOT NULL,
            basis VARCHAR(16) NOT NULL,
            budget VARCHAR(78) NOT NULL,
            inputs_sha256 VARCHAR(64) NOT NULL,
            export_sha256 VARCHAR(64) NOT NULL,
            tx_hash VARCHAR(255),
            created_at {ts} NOT NULL DEFAULT {now})""",
            "ALTER TABLE payments ADD COLUMN payout_id INTEGER REFERENCES payouts (id)",
            "ALTER TABLE payments ADD COLUMN tx_hash VARCHAR(255)",
            "CREATE UNIQUE INDEX payments_payout_creator ON payments (payout_id, creator)",
        ),
    ),
    Migration(
        5,
        "ingestion: the digest of each worker's container list, written only when it changes",
        ("ALTER TABLE workers ADD COLUMN containers_digest VARCHAR(64)",),
    ),
    Migration(
        6,
        "reads that stay fast as the fleet grows: workers online, enrollment tokens to expire",
        (
            # The online count (dashboard, /metrics at every scrape) reads the workers heard
            # within the gap: an index range, not every row (a million: 160 ms to 48 ms).
            "CREATE INDEX workers_last_heartbeat ON workers (last_heartbeat_at)",
            # The sweeper deletes tokens past their expiry (collector/uptime/workers.py).
            "CREATE INDEX enrollment_tokens_expires ON enrollment_tokens (expires_at)",
        ),
    ),
    Migration(
        7,
        "pay only for uptime that happened: wallet-signed enrollment challenges, shared rate "
        "limits, a worker's capacity fixed at enrollment and its changes",
        (
            # A one-time challenge a wallet signs to enroll an agent key
            # (collector/uptime/enrollment.py)
            """CREATE TABLE enrollment_challenges (
            id VARCHAR(64) PRIMARY KEY,
            wallet_address VARCHAR(64) NOT NULL,
            public_key TEXT NOT NULL,
            message TEXT NOT NULL,
            created_at {ts} NOT NULL,
            expires_at {ts} NOT NULL,
            used_at {ts})""",
            "CREATE INDEX enrollment_challenges_expires ON enrollment_challenges (expires_at)",
            # Fixed-window counters shared by every process and node (collector/web/ratelimits.py).
            """CREATE TABLE rate_limits (
            key VARCHAR(255) PRIMARY KEY,
            expires_at {ts} NOT NULL,
            hits INTEGER NOT NULL)""",
            "CREATE INDEX rate_limits_expires ON rate_limits (expires_at)",
            # The capacity credits are computed from: fixed when the worker enrolls, changed
            # only within the operator's bounds or by the operator (collector/uptime/capacity.py).
            "ALTER TABLE workers ADD COLUMN capacity_cpu_cores INTEGER",
            "ALTER TABLE workers ADD COLUMN capacity_ram_gb {float}",
            "ALTER TABLE workers ADD COLUMN capacity_storage_gb {float}",
            """CREATE TABLE capacity_changes (
            id {serial},
            worker_address VARCHAR(64) NOT NULL
                REFERENCES workers (wallet_address) ON DELETE CASCADE,
            changed_at {ts} NOT NULL,
            cpu_cores INTEGER,
            ram_gb {float},
            storage_gb {float},
            reason VARCHAR(32) NOT NULL)""",
            "CREATE INDEX capacity_changes_worker ON capacity_changes (worker_address, changed_at)",
        ),
    ),
    Migration(
        8,
        "nobody acts for someone else: wallet sign-in challenges and the sessions they open",
        (
            # A one-time sign-in message a wallet signs (collector/identity/sign_in.py).
            """CREATE TABLE sign_in_challenges (
            nonce VARCHAR(64) PRIMARY KEY,
            wallet_address VARCHAR(64) NOT NULL,
            message TEXT NOT NULL,
            created_at {ts} NOT NULL,
            expires_at {ts} NOT NULL,
            used_at {ts})""",
            "CREATE INDEX sign_in_challenges_expires ON sign_in_challenges (expires_at)",
            # A wallet's bearer token, kept only as its SHA-256.
            """CREATE TABLE wallet_sessions (
            token_hash VARCHAR(64) PRIMARY KEY,
            wallet_address VARCHAR(64) NOT NULL,
            created_at {ts} NOT NULL,
            expires_at {ts} NOT NULL)""",
            "CREATE INDEX wallet_sessions_expires ON wallet_sessions (expires_at)",
        ),
    ),
    Migration(
        9,
        "large machines: how many containers a worker runs, beyond those its heartbeat lists",
        ("ALTER TABLE workers ADD COLUMN container_total INTEGER",),
    ),
    Migration(
        10,
        "provable uptime: the keys the collector has signed with, and when",
        (
            # Published at /.well-known/tassium-collector.json (collector/identity/
            # collector_key.py): a receipt is checked against the key valid at its time.
            # The key id is the primary key, so that nodes starting at once record it once.
            """CREATE TABLE collector_keys (
            key_id VARCHAR(16) PRIMARY KEY,
            public_key VARCHAR(44) NOT NULL UNIQUE,
            valid_from {ts} NOT NULL,
            valid_until {ts},
            CHECK (valid_until IS NULL OR valid_from <= valid_until))""",
        ),
    ),
    Migration(
        11,
        "provable uptime: each window keeps its last receipt, each payout payment their root",
        (
            # The leaves of a payout's Merkle tree (collector/money/receipt_trees.py).
            "ALTER TABLE open_windows ADD COLUMN receipt TEXT",
            "ALTER TABLE worker_uptime_records ADD COLUMN receipt TEXT",
            # A payout's payment pins the root of the worker's receipts it paid for.
            "ALTER TABLE payments ADD COLUMN receipts_root VARCHAR(64)",
            "ALTER TABLE payments ADD COLUMN receipt_count INTEGER",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def current_version(db: Database) -> int:
    """The schema version of the database, 0 when it was never migrated."""
    if "schema_version" not in db.get_tables():
        return 0
    (version,) = db.execute_sql("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    return version


def migrate(db: Database, target: int = LATEST_VERSION) -> list[Migration]:
    """Apply every migration above the current version up to ``target``; return those applied."""
    dialect = _DIALECT["postgres" if is_postgres() else "sqlite"]
    applied = []
    with db.atomic():
        if is_postgres():
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_KEY,))
        db.execute_sql(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
            "applied_at {ts} NOT NULL DEFAULT {now})".format(**dialect)
        )
        version = current_version(db)
        for migration in MIGRATIONS:
            if version < migration.version <= target:
                for statement in migration.statements:
                    db.execute_sql(statement.format(**dialect))
                db.execute_sql(
                    "INSERT INTO schema_version (version) VALUES (%d)" % migration.version  # noqa: S608, UP031 - an int from this file
                )
                applied.append(migration)
    return applied
