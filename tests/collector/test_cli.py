"""collector/cli.py: ``tassium-collector`` commands, in-process through ``runner`` and once as the
installed console script."""

import hashlib
import importlib.metadata
import json
import re
import secrets
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.cli import cli
from collector.config import RULES, CollectorConfig, variable
from collector.store import migrations
from collector.store.models import (
    EnrollmentToken,
    OpenWindow,
    Payment,
    UptimeRecord,
    Worker,
    WorkerMetric,
)
from collector.uptime.enrollment import enroll
from collector.uptime.windows import apply_heartbeat
from protocol.heartbeat import AgentInfo, Container, Heartbeat, encode_public_key
from protocol.merkle import EMPTY_ROOT
from protocol.receipt_files import FILE_TYPE, FILE_VERSION
from protocol.times import format_timestamp, utcnow
from protocol.wallets import stellar_address
from tests import programs
from tests.conftest import free_port
from tests.factories import connected, minutes_ago, new_wallet

CHECKSUMMED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
HEADINGS = ["WALLET", "STATE", "PAID", "LAST", "HEARTBEAT", "CONTAINERS", "CREDITS", "HOSTNAME"]


def location(url: str) -> str:
    """The database as the commands name it: its file, or its URL without the password."""
    return CollectorConfig(database_url=url).database_location


def migrate_output(url: str) -> list[str]:
    return [f"applied migration {m.version}: {m.description}" for m in migrations.MIGRATIONS] + [
        f"the database {location(url)} is at schema version {migrations.LATEST_VERSION}"
    ]


def needs_migrate(url: str, version: int) -> str:
    return (
        f"Error: the database {location(url)} is at schema version {version}, this collector "
        f"needs {migrations.LATEST_VERSION}: run tassium-collector migrate"
    )


def heartbeat(wallet: str, ts: datetime, containers: int = 1, hostname: str | None = None):
    return Heartbeat(
        wallet,
        ts,
        tuple(Container(f"c{i}", f"{8000 + i}/tcp") for i in range(containers)),
        AgentInfo("1.0", hostname, True),
    )


def seed(url: str, *beats: Heartbeat) -> None:
    """Apply heartbeats as the collector would have when they arrived (``now`` = their time)."""
    with connected(url):
        for beat in beats:
            apply_heartbeat(beat, gap=timedelta(minutes=30), now=beat.timestamp, create_worker=True)


def stored_tokens(url: str) -> list[EnrollmentToken]:
    with connected(url):
        return list(EnrollmentToken.select())


# --- migrate ----------------------------------------------------------------------------------


def test_migrate_applies_every_migration_to_an_empty_database(runner, empty_database_url):
    result = runner("migrate", database_url=empty_database_url)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == migrate_output(empty_database_url)
    with connected(empty_database_url) as database:
        assert migrations.current_version(database) == migrations.LATEST_VERSION


def test_migrate_on_a_migrated_database_only_reports_the_version(runner, database_url):
    result = runner("migrate")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == migrate_output(database_url)[-1:]


def test_migrate_finishes_a_partly_migrated_database(runner, empty_database_url):
    with connected(empty_database_url) as database:
        migrations.migrate(database, target=1)
    result = runner("migrate", database_url=empty_database_url)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == migrate_output(empty_database_url)[1:]


# --- sweep ------------------------------------------------------------------------------------


def swept(closed: int, pruned: int = 0, days: int = 30) -> str:
    return f"closed {closed} windows\ndeleted {pruned} metrics points older than {days} days\n"


def test_sweep_closes_a_stale_window_and_prints_the_count(runner, database_url):
    stale, fresh = new_wallet(), new_wallet()
    started, ended = minutes_ago(130), minutes_ago(120)
    seed(
        database_url,
        heartbeat(stale, started),
        heartbeat(stale, ended),
        heartbeat(fresh, minutes_ago(1)),
    )

    result = runner("sweep")

    assert result.exit_code == 0, result.output
    assert result.stdout == swept(1)
    with connected(database_url):
        assert [(r.worker_address, r.time_from, r.time_to) for r in UptimeRecord.select()] == [
            (stale, started, ended)
        ]
        assert [w.worker_address for w in OpenWindow.select()] == [fresh]


def test_sweep_never_closes_a_window_twice(runner, database_url):
    seed(database_url, heartbeat(new_wallet(), minutes_ago(120)))
    assert runner("sweep").stdout == swept(1)
    assert runner("sweep").stdout == swept(0)
    with connected(database_url):
        assert UptimeRecord.select().count() == 1


def test_sweep_uses_the_configured_gap(runner, database_url):
    seed(database_url, heartbeat(new_wallet(), minutes_ago(120)))
    assert runner("sweep", gap=3 * 3600).stdout == swept(0)
    assert runner("sweep", gap=3600).stdout == swept(1)


def test_sweep_deletes_metrics_points_past_the_retention_and_keeps_credits(runner, database_url):
    wallet = new_wallet()
    beats = [
        heartbeat(wallet, utcnow() - timedelta(days=d, minutes=m))
        for d, m in ((3, 5), (3, 0), (1, 0))
    ]
    seed(database_url, *beats)
    with connected(database_url):
        credits = Worker.get_by_id(wallet).credits_millis
    assert credits > 0

    assert runner("sweep", metrics_retention_days=2).stdout == swept(1, pruned=2, days=2)

    with connected(database_url):
        assert [p.timestamp for p in WorkerMetric.select()] == [beats[2].timestamp]
        assert Worker.get_by_id(wallet).credits_millis == credits


# --- token create -----------------------------------------------------------------------------


def test_token_create_prints_a_token_that_is_stored_only_as_its_sha256(runner, database_url):
    result = runner("token", "create", "--wallet", CHECKSUMMED)

    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert re.fullmatch(r"tsk_[A-Za-z0-9_-]{43}", token)
    (stored,) = stored_tokens(database_url)
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert stored.wallet_address == CHECKSUMMED.lower()
    assert stored.used_at is None
    with connected(database_url) as database:
        (row,) = database.execute_sql("SELECT * FROM enrollment_tokens").fetchall()
    assert not any(token in str(value) for value in row)
    # The notice goes to stderr, so that the token alone can be captured from stdout.
    assert result.stderr == (
        f"valid once for {CHECKSUMMED.lower()} until {format_timestamp(stored.expires_at)}\n"
    )


def test_the_printed_token_enrolls_its_wallet_once(runner, database_url):
    token = runner("token", "create", "--wallet", CHECKSUMMED).stdout.strip()
    key = encode_public_key(Ed25519PrivateKey.generate())
    with connected(database_url):
        assert enroll(CHECKSUMMED.lower(), key, utcnow(), token=token, policy="token") == "enrolled"
        assert Worker.get_by_id(CHECKSUMMED.lower()).public_key == key
        assert EnrollmentToken.get().used_at is not None


@pytest.mark.parametrize(
    ("args", "overrides", "seconds"),
    [
        ((), {}, CollectorConfig().enrollment_token_ttl),
        ((), {"enrollment_token_ttl": 600}, 600),
        (("--ttl", "3600"), {"enrollment_token_ttl": 600}, 3600),
    ],
)
def test_token_create_expires_after_the_ttl(runner, database_url, args, overrides, seconds):
    result = runner("token", "create", "--wallet", new_wallet(), *args, **overrides)
    assert result.exit_code == 0, result.output
    (stored,) = stored_tokens(database_url)
    assert stored.expires_at - stored.created_at == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("wallet", "message"),
    [
        ("0x123", "wallet address must be 0x followed by 40 hex digits"),
        (CHECKSUMMED[:-1] + "D", "wallet address fails its EIP-55 checksum"),
        ("", "wallet address must be 0x followed by 40 hex digits"),
    ],
)
def test_token_create_refuses_a_bad_wallet_and_stores_nothing(
    runner, database_url, wallet, message
):
    result = runner("token", "create", "--wallet", wallet)
    assert result.exit_code == 2
    assert re.search(f"Invalid value for '?--wallet'?: {message}$", result.stderr, re.M)
    assert result.stdout == ""
    assert stored_tokens(database_url) == []


def test_token_create_checks_the_wallet_in_the_configured_format(runner, database_url):
    key = stellar_address(secrets.token_bytes(32))
    refused = runner("token", "create", "--wallet", CHECKSUMMED, wallet_format="stellar")
    assert refused.exit_code == 2
    assert "must be a Stellar public key" in refused.stderr
    accepted = runner("token", "create", "--wallet", key, wallet_format="stellar")
    assert accepted.exit_code == 0, accepted.output
    assert [t.wallet_address for t in stored_tokens(database_url)] == [key]


@pytest.mark.parametrize("ttl", ["59", "2592001", "soon"])
def test_token_create_refuses_a_ttl_out_of_range(runner, database_url, ttl):
    result = runner("token", "create", "--wallet", new_wallet(), "--ttl", ttl)
    assert result.exit_code == 2
    assert "Invalid value for '--ttl'" in result.stderr
    assert stored_tokens(database_url) == []


# --- workers ----------------------------------------------------------------------------------


def test_workers_prints_a_table_with_each_workers_state(runner, database_url):
    online, offline, silent = ("0x" + digit * 40 for digit in "123")
    recent, old = minutes_ago(1), minutes_ago(120)
    seed(
        database_url,
        heartbeat(online, recent, containers=2, hostname="node-1"),
        heartbeat(offline, old, containers=1),
    )
    with connected(database_url):
        Worker.create(wallet_address=silent, public_key="enrolled but never heard from")

    result = runner("workers")

    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == HEADINGS
    assert [row.split() for row in rows] == [
        [online, "up", "yes", format_timestamp(recent), "2", "0", "node-1"],
        [offline, "down", "no", format_timestamp(old), "1", "0", "-"],
        [silent, "never_seen", "no", "never", "0", "0", "-"],
    ]
    # Columns line up under their headings.
    for heading in ("STATE", "PAID", "LAST HEARTBEAT", "CONTAINERS", "CREDITS", "HOSTNAME"):
        column = header.index(heading)
        assert all(row[column - 2 : column] == "  " and row[column] != " " for row in rows)


def test_workers_prints_credits_in_credits(runner, dbconn):
    wallet = new_wallet()
    Worker.create(wallet_address=wallet, credits_millis=72855)
    header, row = runner("workers").stdout.splitlines()
    # The column a heading names, exact to the thousandth: what the API answers and the
    # dashboard shows, never the stored thousandths (72855).
    assert row[header.index("CREDITS") :].split()[0] == "72.855"


def test_workers_counts_a_worker_online_within_the_configured_gap(runner, database_url):
    wallet = new_wallet()
    seed(database_url, heartbeat(wallet, minutes_ago(120)))
    (row,) = runner("workers", gap=3 * 3600).stdout.splitlines()[1:]
    # Within the gap, its window still open: paid, though silent since (late).
    assert row.split()[:3] == [wallet, "late", "yes"]


def test_workers_prints_only_the_header_when_there_are_none(runner):
    result = runner("workers")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == HEADINGS


# --- refusing to run --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"port": 70000}, "port: must be a port from 1 to 65535, not 70000"),
        ({"gap": "soon"}, "gap: must be a whole number, not 'soon'"),
        ({"colour": "blue"}, "colour: unknown setting"),
    ],
)
@pytest.mark.parametrize("command", [["migrate"], ["sweep"], ["workers"]])
def test_a_bad_config_value_stops_every_command_with_the_message(
    runner, command, overrides, problem
):
    result = runner(*command, **overrides)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "Error: invalid collector configuration:" in result.stderr
    assert re.search(r"collector-\w+\.yaml: " + re.escape(problem), result.stderr)


def test_a_missing_config_file_is_an_error(tmp_path):
    missing = tmp_path / "missing.yaml"
    result = CliRunner().invoke(cli, ["--config", str(missing), "migrate"])
    assert result.exit_code == 1
    assert f"{missing}: no such file" in result.stderr


@pytest.mark.parametrize(
    "command", [["sweep"], ["workers"], ["token", "create", "--wallet", CHECKSUMMED]]
)
@pytest.mark.parametrize("version", [0, 1])
def test_a_command_on_an_unmigrated_database_says_to_run_migrate(
    runner, empty_database_url, command, version
):
    with connected(empty_database_url) as database:
        if version:
            migrations.migrate(database, target=version)
        tables_before = set(database.get_tables())

    result = runner(*command, database_url=empty_database_url)

    assert result.exit_code == 1
    assert result.stderr.strip() == needs_migrate(empty_database_url, version)
    with connected(empty_database_url) as database:
        assert set(database.get_tables()) == tables_before
        assert migrations.current_version(database) == version


# --- the installed console script ---------------------------------------------------------------


@pytest.fixture
def console_script() -> Path:
    """``tassium-collector`` as pip installed it in this virtualenv."""
    return programs.console_script("tassium-collector")


def run_script(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=60)


def test_the_console_script_migrates_an_empty_database(
    console_script, config_file, empty_database_url
):
    done = run_script(
        console_script, "--config", str(config_file(database_url=empty_database_url)), "migrate"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == migrate_output(empty_database_url)


def test_the_console_script_exits_non_zero_on_a_bad_config(console_script, config_file):
    done = run_script(console_script, "--config", str(config_file(port="eighty")), "migrate")
    assert done.returncode == 1
    assert "port: must be a whole number, not 'eighty'" in done.stderr
    assert done.stdout == ""


# --- a database the command cannot use -----------------------------------------------------------

ALL_COMMANDS = [
    ["migrate"],
    ["sweep"],
    ["workers"],
    ["serve"],
    ["token", "create", "--wallet", "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"],
]


def unreachable_postgres() -> str:
    return f"postgresql://tassium:s3cret-password@127.0.0.1:{free_port()}/tassium"


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: c[0])
def test_an_unreachable_postgres_is_one_clear_line_for_every_command(runner, command):
    result = runner(*command, database_url=unreachable_postgres())
    assert result.exit_code == 1
    assert "cannot use the database postgresql://tassium:********@127.0.0.1:" in result.output
    assert "check that PostgreSQL is running there and that DATABASE_URL is right" in result.output
    assert "s3cret-password" not in result.output


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: c[0])
def test_a_sqlite_file_in_a_missing_directory_is_one_clear_line(runner, tmp_path, command):
    result = runner(*command, database_url=f"sqlite:///{tmp_path}/missing/collector.db")
    assert result.exit_code == 1
    if command == ["migrate"]:  # the one command that makes a database, not a directory
        assert "unable to open database file" in result.output
        assert (
            f"check that the directory {tmp_path}/missing exists and is writable" in result.output
        )
    else:
        assert result.stderr == f"Error: {missing(tmp_path / 'missing' / 'collector.db')}\n"
    assert not (tmp_path / "missing").exists()


def missing(path: Path) -> str:
    return (
        f"there is no database at {path}: run tassium-collector migrate (or serve --migrate) "
        "to create it, or set database_url (TASSIUM_DATABASE_URL) to the collector's database"
    )


def receipt_file(tmp_path: Path) -> str:
    path = tmp_path / "receipts.json"
    path.write_text(
        json.dumps(
            {"type": FILE_TYPE, "v": FILE_VERSION, "walletAddress": CHECKSUMMED, "receipts": []}
        )
    )
    return str(path)


# Every command but migrate (and serve --migrate): each opens a database that must exist.
READERS = [
    ["sweep"],
    ["workers"],
    ["serve"],
    ["token", "create", "--wallet", CHECKSUMMED],
    ["report", "--period", "2026-10"],
    ["payout", "--period", "2026-10", "--budget", "100"],
    ["receipts-key", "show"],
    ["receipts-key", "rotate"],
    ["receipts-key", "retire", "a1b2c3d4e5f60718"],
    ["capacity", "show", "--wallet", CHECKSUMMED],
    ["capacity", "approve", "--wallet", CHECKSUMMED],
    ["capacity", "set", "--wallet", CHECKSUMMED, "--cpu", "2"],
    ["verify-receipts", "{receipts}"],
]


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("command", READERS, ids=lambda c: " ".join(c[:2]))
def test_no_command_but_migrate_creates_a_database_and_each_names_the_one_missing(
    runner, tmp_path, command
):
    path = tmp_path / "nowhere.db"
    args = [arg.format(receipts=receipt_file(tmp_path)) for arg in command]
    result = runner(*args, database_url=f"sqlite:///{path}")
    assert (result.exit_code, result.stderr) == (1, f"Error: {missing(path)}\n")
    assert not path.exists()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_every_command_finds_the_default_database_from_any_directory(runner, tmp_path, monkeypatch):
    # The state directory systemd names; a developer's (~/.local/state/…) is found the same way.
    state = tmp_path / "state"
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    database = state / "tassium-collector.db"
    for directory in ("here", "there"):
        (tmp_path / directory).mkdir()
    monkeypatch.chdir(tmp_path / "here")
    refused = runner("workers", database_url=None)
    assert (refused.exit_code, refused.stderr) == (1, f"Error: {missing(database)}\n")
    assert not state.exists() and list((tmp_path / "here").iterdir()) == []

    monkeypatch.chdir(tmp_path / "there")
    migrated = runner("migrate", database_url=None)
    assert migrated.exit_code == 0, migrated.output
    assert migrated.stdout.splitlines() == migrate_output(f"sqlite:///{database}")
    assert state.stat().st_mode & 0o777 == 0o700
    assert list((tmp_path / "there").iterdir()) == []

    monkeypatch.chdir(tmp_path / "here")
    listed = runner("workers", database_url=None)
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.split() == HEADINGS
    assert list((tmp_path / "here").iterdir()) == []


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_schema_newer_than_the_collector_is_named_with_its_database(runner, database_url):
    with connected(database_url) as database:
        database.execute_sql(
            "INSERT INTO schema_version (version) VALUES (?)", (migrations.LATEST_VERSION + 1,)
        )
    result = runner("workers")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: the database {location(database_url)} is at schema version "
        f"{migrations.LATEST_VERSION + 1}, newer than this collector knows "
        f"({migrations.LATEST_VERSION}): run a collector as new as the one that migrated it\n"
    )


def test_the_console_script_shows_no_traceback_for_an_unreachable_database(
    console_script, config_file
):
    path = config_file(database_url=unreachable_postgres())
    for command in ("workers", "migrate", "serve"):
        done = run_script(console_script, "--config", str(path), command)
        assert done.returncode == 1
        assert done.stderr.startswith("Error: cannot use the database"), done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


# --- report and payout: the same tables as the routes ----------------------------------------


def test_report_prints_the_fleet_report_as_the_route_serves_it(runner, operator, october):
    as_csv = runner("report", "--period", "2026-10", "--csv")
    served = operator.get("/reports/fleet.csv", query_string={"period": "2026-10"})
    assert as_csv.exit_code == 0
    assert as_csv.stdout == served.get_data(as_text=True).replace("\r\n", "\n")
    assert len(as_csv.stdout.splitlines()) == 1 + 4  # the header and every worker

    # The CSV is the route's: the fraction to the millionth.
    fractions = {line.split(",")[0]: line.split(",")[3] for line in as_csv.stdout.splitlines()}
    assert fractions[october[1]] == "0.002688"  # 2 h of October's 744

    table = runner("report", "--period", "2026-10").stdout.splitlines()
    headings = ["WALLET", "UPTIME (s)", "DOWNTIME (s)", "UPTIME SHARE", "CREDITS", "FLAGS"]
    assert re.split(r"\s{2,}", table[0]) == headings
    rows = {line.split()[0]: re.split(r"\s{2,}", line)[1:] for line in table[1:]}
    # The share as a percentage with one decimal, rounded down as the dashboard's (0.2688 %
    # is 0.2 %, not 0.3 %); credits in credits.
    assert rows[october[1]] == ["7200", "2671200", "0.2 %", "3", "-"]
    assert rows[october[0]][2:4] == ["0.1 %", "1.5"]


def test_payout_prints_the_export_and_records_it_once(runner, client, october, operator):
    query = {"period": "2026-10", "budget": "1000", "basis": "credits"}
    served = operator.get("/payouts/export.csv", query_string=query)
    by_credits = ("--period", "2026-10", "--budget", "1000", "--basis", "credits")
    printed = runner("payout", *by_credits, "--csv")
    assert printed.stdout == served.get_data(as_text=True).replace("\r\n", "\n")
    assert f"export sha256 {served.headers['X-Tassium-Export-SHA256']}" in printed.stderr
    assert f"inputs sha256 {served.headers['X-Tassium-Inputs-SHA256']}" in printed.stderr

    args = ("payout", *by_credits, "--record")
    first = runner(*args, "--tx-hash", "AB" * 32)
    assert first.exit_code == 0
    assert first.stderr.startswith("recorded payout")
    # Made without heartbeats, the records hold no receipts: the empty tree's root.
    # The table weighs in credits (the CSV in thousandths of one: 1500 and 3000).
    header, *rows = first.stdout.splitlines()
    assert re.split(r"\s{2,}", header) == ["WALLET", "CREDITS", "AMOUNT", "RECEIPTS ROOT"] + [
        "RECEIPTS"
    ]
    assert [line.split() for line in rows] == [
        [october[0], "1.5", "333", EMPTY_ROOT.hex(), "0"],
        [october[1], "3", "667", EMPTY_ROOT.hex(), "0"],
    ]
    assert runner(*args).stderr.startswith("already recorded payout")
    with connected(client.application.config["TASSIUM"].database_url):
        assert [
            (p.creator, p.amount, p.tx_hash) for p in Payment.select().order_by(Payment.creator)
        ] == [
            (october[0], "333", "ab" * 32),
            (october[1], "667", "ab" * 32),
        ]
    refused = runner("payout", "--period", "2026-10", "--budget", "999", "--record")
    assert refused.exit_code == 1
    assert "a different payout" in refused.stderr


def test_payout_weighs_uptime_unless_told_credits(runner, operator, october):
    printed = runner("payout", "--period", "2026-10", "--budget", "600", "--csv")
    served = operator.get(
        "/payouts/export.csv", query_string={"period": "2026-10", "budget": "600"}
    )
    assert printed.stdout == served.get_data(as_text=True).replace("\r\n", "\n")
    assert [line.split(",")[1:3] for line in printed.stdout.splitlines()[1:]] == [
        ["3600000", "100"],
        ["7200000", "200"],
        ["10800000", "300"],
    ]
    # The table weighs the same uptime in seconds (the CSV in milliseconds).
    header, *rows = runner("payout", "--period", "2026-10", "--budget", "600").stdout.splitlines()
    assert re.split(r"\s{2,}", header)[:3] == ["WALLET", "UPTIME (s)", "AMOUNT"]
    assert [line.split()[1:3] for line in rows] == [["3600", "100"], ["7200", "200"]] + [
        ["10800", "300"]
    ]


def test_payout_refuses_to_record_a_period_not_final_yet_saying_until_when(runner, dbconn):
    # The period ended an hour ago; its figures can change for max_backfill and the gap more.
    end = utcnow().replace(minute=0, second=0, microsecond=0)
    period = f"{format_timestamp(end - timedelta(days=1))}/{format_timestamp(end)}"
    wallet = new_wallet()
    Worker.create(wallet_address=wallet, created_at=end - timedelta(days=2))
    WorkerMetric.create(
        worker=wallet, timestamp=end - timedelta(hours=2), container_count=1, credits_millis=10
    )
    args = ("payout", "--period", period, "--budget", "5", "--basis", "credits", "--record")
    refused = runner(*args, max_backfill=2 * 3600, gap=45 * 60)
    assert refused.exit_code == 1
    final = format_timestamp(end + timedelta(hours=2, minutes=45))
    assert refused.stderr == (
        f"Error: {period} is not final yet: it ends at {format_timestamp(end)}, heartbeats may "
        "still arrive up to 2 h late (max_backfill) and a window grows up to 45 min (the gap) "
        f"past its last heartbeat, so its figures can change until {final}: record its payout "
        "from then on\n"
    )
    assert Payment.select().count() == 0


def test_payout_refuses_to_record_hours_already_paid(runner, october):
    assert runner("payout", "--period", "2026-10", "--budget", "10", "--record").exit_code == 0
    overlapping = "2026-10-31T00:00:00Z/2026-11-30T00:00:00Z"
    args = ("payout", "--period", overlapping, "--budget", "10", "--basis", "credits")
    assert runner(*args).exit_code == 0  # printing a split records nothing, so it may overlap
    refused = runner(*args, "--record")
    assert refused.exit_code == 1
    assert refused.stderr == (
        f"Error: {overlapping} overlaps the payout recorded for 2026-10 "
        "(2026-10-01T00:00:00Z to 2026-11-01T00:00:00Z)\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("report", "--period", "2026-13"), "no such month"),
        (("payout", "--period", "2026-10", "--budget", "-5"), "budget"),
        (("payout", "--period", "2026-10", "--budget", "5", "--tx-hash", "0x1"), "64 hex"),
        (("payout", "--period", "2026-10", "--budget", "5", "--basis", "votes"), "votes"),
    ],
)
def test_report_and_payout_refuse_bad_options(runner, dbconn, args, message):
    result = runner(*args)
    assert result.exit_code == 2
    assert message in result.stderr


# --- help, version and the variables ---------------------------------------------------------


def every_command(group: click.Group = cli, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += every_command(command, (*path, name))
        else:
            found.append((*path, name))
    return found


@pytest.mark.parametrize("flag", ["-h", "--help"])
@pytest.mark.parametrize("command", every_command(), ids=lambda c: " ".join(c) or "-")
def test_h_and_help_show_every_commands_help(tmp_path, flag, command):
    settings = tmp_path / "collector.yaml"  # no database is opened for help
    settings.write_text("{}\n")
    result = CliRunner().invoke(
        cli, ["--config", str(settings), *command, flag], prog_name="tassium-collector"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: tassium-collector {' '.join(command)}".rstrip())


def test_version_is_the_installed_distributions():
    result = CliRunner().invoke(cli, ["--version"], prog_name="tassium-collector")
    assert result.exit_code == 0
    assert result.stdout == f"tassium-collector {importlib.metadata.version('tassium')}\n"


def test_help_names_every_variable_and_where_the_database_is():
    shown = " ".join(CliRunner().invoke(cli, ["--help"]).stdout.split())
    for name in RULES:
        assert variable(name) in shown
    assert "TASSIUM_CONFIG" in shown and "DATABASE_URL" in shown
    assert "$STATE_DIRECTORY" in shown and "~/.local/state/tassium-collector" in shown


def test_the_console_script_takes_h_and_version(console_script):
    assert run_script(console_script, "-h").returncode == 0
    version = run_script(console_script, "--version")
    assert version.stdout == f"tassium-collector {importlib.metadata.version('tassium')}\n"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_mistyped_variable_is_a_warning_that_names_the_one_meant(runner, monkeypatch):
    monkeypatch.setenv("TASSIUM_GAPP", "60")
    result = runner("workers")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "Warning: TASSIUM_GAPP is not a setting of the collector: it is ignored; "
        "did you mean TASSIUM_GAP?\n"
    )
