"""A served collector for the benchmarks: a real process on a free port, stopped after."""

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

from tests.conftest import OPERATOR_TOKEN, PostgresServer, free_port

# What the operator's requests carry (the fleet reports are the operator's).
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@contextmanager
def served_collector(*, with_process: bool = False, **settings) -> Iterator:
    """``tassium-collector serve`` on SQLite in a temporary directory, with ``settings``
    added to its configuration; yields its URL (and its process, ``with_process``)."""
    with tempfile.TemporaryDirectory(prefix="tassium-bench-") as directory:
        port = free_port()
        config = Path(directory) / "collector.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "database_url": f"sqlite:///{directory}/collector.db",
                    "receipt_key_file": f"{directory}/receipt-signing.key",
                    "host": "127.0.0.1",
                    "port": port,
                    "migrate_on_start": True,
                    "sweep_interval": 0,
                    "log_level": "WARNING",
                    # A load from one machine, in compressed time: the limits per wallet and
                    # per client address would measure themselves, not the collector.
                    "min_interval": 0,
                    # Heartbeats up to ten minutes old (heartbeat_load.py's compressed time)
                    # must be vouched for and credited as live ones are: with the default
                    # skew they would be stored as evidence only, and move no window.
                    "max_skew": 3600,
                    "rate_limit_enrollment": "0",
                    "rate_limit_writes": "0",
                    "api_token": OPERATOR_TOKEN,
                    **settings,
                }
            )
        )
        config.chmod(0o600)  # it holds the operator's token: the collector refuses it otherwise
        main = "from collector.cli import main; main()"
        command = [sys.executable, "-c", main, "--config", str(config), "serve"]
        with (Path(directory) / "serve.log").open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, process)
            yield (url, process) if with_process else url
        finally:
            process.terminate()
            process.wait(timeout=60)


def wait_healthy(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the collector exited with {process.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("the collector did not answer within 60 s")


def on_each_database(run: Callable[[str], dict], *, postgres: bool) -> dict[str, dict]:
    """``run(database_url)`` on SQLite in a temporary directory and, with ``postgres``, on a
    throw-away PostgreSQL server (an empty database: ``run`` migrates it)."""
    from tests.conftest import PostgresServer

    results = {}
    with tempfile.TemporaryDirectory(prefix="tassium-bench-") as directory:
        results["SQLite"] = run(f"sqlite:///{Path(directory) / 'collector.db'}")
    if postgres:
        server = PostgresServer()
        server.start()
        try:
            results["PostgreSQL"] = run(server.fresh_database(migrated=False))
        finally:
            server.stop()
    return results


class DurablePostgres(PostgresServer):
    """The tests' throw-away server, but with fsync and synchronous commits at their defaults:
    what a benchmark's heartbeat or ping saves is a durable commit, so it must pay for it."""

    durability = ""
