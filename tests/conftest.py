"""Fixtures after the Flask tutorial's conftest: ``app``, ``client``, ``runner``; plus a real
PostgreSQL server started once per test run (as httpx starts its ``server``), and
``database_url`` parametrised over SQLite and PostgreSQL so every test that uses the
database runs on both."""

import functools
import glob
import itertools
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import psycopg2
import pytest
import yaml
from click.testing import CliRunner

from collector.app import create_app
from collector.cli import cli
from collector.config import CollectorConfig
from collector.store import db, migrations
from collector.store.models import CollectorRun, Worker
from collector.uptime import liveness
from protocol.times import utcnow
from tests.agent.conftest import Dockerd, dockerd_binary


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under pytest-xdist (scripts/test), one Docker engine for all the workers: two would fight
    over docker0 and iptables. This process, their controller, starts it before them (xdist
    starts them after this hook), names it to them in TEST_DOCKER_HOST (its TLS port and client
    certificates in TEST_DOCKER_TLS_HOST and TEST_DOCKER_CERT_PATH), and stops it after them.
    Starting and stopping it takes about two seconds, whatever the tests."""
    distributed = session.config.pluginmanager.has_plugin("dsession")
    if not distributed or "TEST_DOCKER_HOST" in os.environ or dockerd_binary() is None:
        return  # else the tests' own dockerd fixture runs, or fails saying what is missing
    engine = Dockerd()
    engine.start()
    named = engine.environment()
    os.environ.update(named)
    session.config.add_cleanup(engine.stop)
    session.config.add_cleanup(lambda: [os.environ.pop(name) for name in named])


# Python's own, as the collector runs with it: read before any test module is imported.
RECURSION_LIMIT = sys.getrecursionlimit()


@pytest.fixture(autouse=True)
def python_recursion_limit():
    """py_ecc, under eth-account (the tests' EVM wallet), raises the recursion limit to
    100,000 when imported, which the collector never runs with: under it a deeply nested JSON
    body overflows the C stack and kills the process, where the collector refuses it."""
    sys.setrecursionlimit(RECURSION_LIMIT)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch):
    """No test sees the developer's TASSIUM_* settings or DATABASE_URL."""
    for name in list(os.environ):
        if name.startswith("TASSIUM_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)


# Under pytest-xdist (scripts/test) each worker takes ports from a range of its own, below the
# kernel's ephemeral ports (32768 and up): a port handed to one worker's server is then never
# handed to another worker, nor taken as an outgoing connection's source port, in the seconds
# before that server binds it; nor handed out again soon after that server stops.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ...; unset without xdist


@functools.cache
def _worker_ports() -> tuple[int, Iterator[int]]:
    """How many ports this worker has, and an endless round of them."""
    count = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    size = (32768 - 16384) // count
    # A worker that replaces a crashed one is numbered on (gw4 of four): the crashed one's range.
    first = 16384 + int(XDIST_WORKER.removeprefix("gw")) % count * size
    start = random.randrange(size)  # another test run's worker of that name starts elsewhere
    return size, itertools.cycle([first + (start + i) % size for i in range(size)])


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on."""
    if XDIST_WORKER is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    size, ports = _worker_ports()
    for port in itertools.islice(ports, size):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use: another program's, or a server of this worker's
            return port
    raise RuntimeError(f"all {size} ports of xdist worker {XDIST_WORKER} are in use")


# --- PostgreSQL -----------------------------------------------------------------------------


def _pg_binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None
    )
    if found is None:
        pytest.fail(f"{name} not found: install PostgreSQL (apt-get install postgresql)")
    return found


class PostgresServer:
    """A throw-away cluster owned by the postgres user when we are root (it refuses root)."""

    # Tests need no crash safety; a benchmark of commits does (bench/pings.py clears this).
    durability = "-c fsync=off -c full_page_writes=off -c synchronous_commit=off"

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="tassium-pg-"))
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.template = "tassium_template"

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, cwd=self.dir)

    def start(self) -> None:
        self._run(
            _pg_binary("initdb"),
            "-D",
            str(self.data),
            "--auth=trust",
            "-U",
            "postgres",
            "--encoding=UTF8",
            "--locale=C",
        )
        self.resume()
        self.admin(f"CREATE DATABASE {self.template}")
        database = db.bind(self.url(self.template))
        with database.connection_context():
            migrations.migrate(database)
        database.close_all()

    def pause(self) -> None:
        """Stop the server, keeping its data (fast, not immediate: the test server runs with
        synchronous_commit off, and an immediate stop would lose the last commits)."""
        self._run(_pg_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        options = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.dir} -c max_connections=200 {self.durability}"
        )
        self._run(
            _pg_binary("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run(_pg_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def admin(self, sql: str) -> None:
        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres"
        )
        conn.autocommit = True
        try:
            conn.cursor().execute(sql)
        finally:
            conn.close()

    def fresh_database(self, *, migrated: bool = True) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        template = self.template if migrated else "template0"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.url(name)


@pytest.fixture(scope="session")
def postgres():
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


# --- the collector --------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request) -> str:
    return request.param


@pytest.fixture
def empty_database_url(backend, request, tmp_path) -> str:
    """A database with no schema at all, for migration tests."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return request.getfixturevalue("postgres").fresh_database(migrated=False)


@pytest.fixture
def database_url(backend, request, tmp_path) -> str:
    """A migrated database on each backend."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'collector.db'}"
        with db.bind(url).connection_context():
            migrations.migrate(db.database)
        return url
    return request.getfixturevalue("postgres").fresh_database()


# The operator's token of the collectors the tests build: the `operator` client sends it.
OPERATOR_TOKEN = "operator-token-of-the-tests-0123456789"


def receipt_key_file(directory: Path) -> str:
    """Where the collectors the tests build keep their receipt key: never the default, which
    is the machine's own (/var/lib/tassium-collector)."""
    return str(directory / "receipt-signing.key")


@pytest.fixture
def config(database_url, tmp_path) -> CollectorConfig:
    # The sweeper thread is off in tests: they call the sweep pass themselves with their own now.
    return CollectorConfig(
        database_url=database_url,
        sweep_interval=0,
        api_token=OPERATOR_TOKEN,
        receipt_key_file=receipt_key_file(tmp_path),
    )


@pytest.fixture
def app(config):
    app = create_app(config)
    app.config["TESTING"] = True
    yield app
    db.database.close()
    if hasattr(db.database.obj, "close_all"):
        db.database.close_all()


@pytest.fixture
def make_app(config):
    """Build an app with some settings changed: ``make_app(require_signatures=False)``."""
    made = []

    def make(**overrides):
        app = create_app(replace(config, **overrides))
        app.config["TESTING"] = True
        made.append(app)
        return app

    yield make
    if hasattr(db.database.obj, "close_all"):
        db.database.close_all()


@pytest.fixture
def client(app):
    """An anonymous client: no Authorization header."""
    return app.test_client()


def operator_client(app):
    """A test client of ``app`` that sends the operator's token with every request."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {OPERATOR_TOKEN}"
    return client


@pytest.fixture
def operator(app):
    return operator_client(app)


@pytest.fixture
def dbconn(app):
    """The database, for asserting on tables directly between requests. Peewee connects on
    first use; requests close the thread's connection as they end, so a test may interleave
    both freely."""
    yield db.database
    if not db.database.is_closed():
        db.database.close()


@pytest.fixture
def config_file(tmp_path, config):
    """Write a collector YAML file; ``config_file(gap=60)`` overrides settings, and a setting
    given as None is left out (its default then)."""

    def write(**overrides) -> Path:
        values = {
            "database_url": config.database_url,
            "sweep_interval": 0,
            "receipt_key_file": config.receipt_key_file,
            **overrides,
        }
        values = {name: value for name, value in values.items() if value is not None}
        path = tmp_path / f"collector-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump(values))
        path.chmod(0o600)
        return path

    return write


@pytest.fixture
def runner(config_file):
    """Invoke ``tassium-collector`` commands in-process: ``runner("sweep", gap=60)``."""

    def invoke(*args: str, **overrides):
        path = config_file(**overrides)
        return CliRunner().invoke(cli, ["--config", str(path), *args], catch_exceptions=False)

    return invoke


HEARTBEAT_STATUS = re.compile(r'"POST /heartbeat HTTP/[\d.]+" (\d{3}) ')


class ServedCollector:
    # The headers of a request the tests' operator sends (a served collector has the token
    # unless started with api_token=None).
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}

    def __init__(self, process: subprocess.Popen, url: str, log: Path):
        self.process = process
        self.url = url
        self.log = log

    def heartbeat_statuses(self) -> list[int]:
        """How this process answered each POST /heartbeat, in order (from its access log)."""
        return [int(status) for status in HEARTBEAT_STATUS.findall(self.log.read_text())]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it, gracefully (SIGTERM) unless told otherwise; killed after 15 s."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def crash(self) -> None:
        """Kill the master and its workers at once, as a crashed machine or systemd's
        SIGKILL of the unit would: killing only the master leaves a worker running (and
        recording that it is alive) until it notices, about a second later."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def launch_collector(config_path: Path, port: int, log: Path) -> ServedCollector:
    """Start ``tassium-collector serve`` with this config file as a real process (gunicorn)
    and wait for /healthz."""
    with log.open("wb") as output:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from collector.cli import main; main()",
                "--config",
                str(config_path),
                "serve",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, for crash()
        )
    served = ServedCollector(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"collector exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(served.url + "/healthz", timeout=1).status_code == 200:
                return served
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    served.stop(signal.SIGINT)
    pytest.fail(f"collector did not answer in 30 s:\n{log.read_text()}")


@pytest.fixture
def serve_collector(config_file, tmp_path):
    """Start ``tassium-collector serve`` as a real process (gunicorn) and wait for /healthz."""
    started: list[ServedCollector] = []

    def start(**overrides) -> ServedCollector:
        # port=<a free_port()> again restarts a collector at the same address.
        port = overrides.pop("port", None) or free_port()
        # The tests' operator token, unless a test serves one without (api_token=None).
        if overrides.setdefault("api_token", OPERATOR_TOKEN) is None:
            del overrides["api_token"]
        path = config_file(host="127.0.0.1", port=port, **overrides)
        served = launch_collector(path, port, tmp_path / f"serve-{port}-{len(started)}.log")
        started.append(served)
        return served

    yield start
    for served in started:
        # gunicorn's quick shutdown (SIGINT): a graceful one waits about a second for each
        # worker's loop to notice, a second per served test that nothing here needs.
        served.stop(signal.SIGINT)


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of this test's own, which it may stop and start (an outage)."""
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


# --- a collector's past -----------------------------------------------------------------------


class History:
    """A collector that was down for the two days before the test, and workers known to it
    since before then: heartbeats stamped minutes or hours ago then arrive as an agent's
    spool replayed after the outage, and are credited (collector/uptime/vouching.py). For tests of
    what heartbeats do to windows, reports and credits, which send such histories."""

    def __init__(self):
        self.since = utcnow() - timedelta(days=2)
        CollectorRun.create(host="earlier", pid=1, started_at=self.since, alive_at=self.since)

    def collector_ran(self, start: datetime, end: datetime) -> None:
        """The collector was taking heartbeats from ``start`` to ``end`` (a run alive until
        its grace runs out at ``end``): a silence in that span is the worker's."""
        grace = liveness.BEATS_OF_GRACE * timedelta(seconds=CollectorConfig.liveness_interval)
        CollectorRun.create(host="earlier", pid=2, started_at=start, alive_at=end - grace)

    def known(self, wallet: str) -> str:
        """The worker (created if the collector never saw it) enrolled, or first seen, then."""
        Worker.insert(wallet_address=wallet, created_at=self.since).on_conflict_ignore().execute()
        changes = {"created_at": self.since}
        if Worker.get_by_id(wallet).enrolled_at is not None:
            changes["enrolled_at"] = self.since
        Worker.update(changes).where(Worker.wallet_address == wallet).execute()
        return wallet


@pytest.fixture
def history(dbconn) -> History:
    return History()
