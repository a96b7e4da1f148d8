"""A real Docker engine for the agent's tests: started once per run on a private socket,
with a busybox image imported locally (nothing can be pulled here). TEST_DOCKER_HOST names
an engine already running instead (several test runs at once would fight over docker0): so
does the controller of a pytest-xdist run, for its workers (tests/conftest.py)."""

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import docker
import httpx
import pytest
import yaml

from tests.factories import Wallet

IMAGE = "local/busybox"


def dockerd_binary() -> str | None:
    """The dockerd this process can run: none without root."""
    binary = shutil.which("dockerd") or "/usr/sbin/dockerd"
    return binary if os.path.exists(binary) and os.geteuid() == 0 else None


class Dockerd:
    def __init__(self, host: str | None = None, options: tuple[str, ...] = ()):
        self.options = options  # more dockerd flags, as a benchmark's --bridge=none
        self.dir = Path(tempfile.mkdtemp(prefix="tassium-dockerd-", dir="/tmp"))
        self.socket = self.dir / "docker.sock"
        self.host = host or f"unix://{self.socket}"
        self.pidfile = self.dir / "docker.pid"
        self.process: subprocess.Popen | None = None
        self._client: docker.DockerClient | None = None
        self.log = None

    def start(self) -> None:
        binary = dockerd_binary()
        if binary is None:
            pytest.fail("the agent tests need dockerd (apt-get install docker.io) and root")
        self.log = (self.dir / "log").open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                "--host",
                self.host,
                "--data-root",
                str(self.dir / "data"),
                "--exec-root",
                str(self.dir / "exec"),
                "--pidfile",
                str(self.pidfile),
                *self.options,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not self._accepting():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dockerd did not start:\n{(self.dir / 'log').read_text()}")
            time.sleep(0.1)
        self.client().ping()
        self._import_busybox()

    def _accepting(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.socket))
            except OSError:
                return False
        return True

    def _import_busybox(self) -> None:
        if self.client().images.list(name=IMAGE):
            return
        # A root file system of one static busybox, as DESIGN.md describes.
        busybox = Path(shutil.which("busybox") or "/bin/busybox")
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            tar.add(busybox, arcname="bin/busybox")
            link = tarfile.TarInfo("bin/sh")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        subprocess.run(
            ["docker", "-H", self.host, "import", "-c", 'CMD ["/bin/sh"]', "-", IMAGE],
            input=archive.getvalue(),
            check=True,
            capture_output=True,
        )

    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker.DockerClient(base_url=self.host, timeout=30)
        return self._client

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            for container in self.client().containers.list(all=True):
                container.remove(force=True)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._client is not None:
            self._client.close()
        if self.log is not None:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def dockerd():
    shared = os.environ.get("TEST_DOCKER_HOST")
    engine = Dockerd(shared)
    if shared:
        engine._import_busybox()
        yield engine
        engine.stop()
        return
    engine.start()
    yield engine
    engine.stop()


@pytest.fixture
def docker_client(dockerd):
    return dockerd.client()


@pytest.fixture
def run_container(docker_client):
    """Start a busybox container, ``run_container("sleep", "300", name=..., ports=...)``
    (Docker SDK keyword arguments); everything a test starts is removed after it."""
    label = {"tassium-test": uuid.uuid4().hex}

    def run(*command: str, **kwargs):
        kwargs.setdefault("detach", True)
        return docker_client.containers.run(IMAGE, ["busybox", *command], labels=label, **kwargs)

    yield run
    # Only this test's: the engine is shared by the test processes, and listing another
    # one's containers races with their removal (the SDK inspects each one it lists).
    mine = {"label": f"tassium-test={label['tassium-test']}"}
    for container in docker_client.containers.list(all=True, filters=mine):
        container.remove(force=True)


# --- the agent as a real process -------------------------------------------------------------


class AgentProcess:
    """One worker's agent: its YAML configuration, state directory and daemon processes."""

    def __init__(self, directory: Path, collector_url: str, overrides: dict):
        self.dir = directory
        directory.mkdir()
        # The owner, who signs the enrollment challenge with their wallet.
        self.owner = Wallet(overrides.get("wallet_format", "evm"))
        self.wallet = overrides.pop("wallet", None) or self.owner.address
        self.collector_url = collector_url
        self.state_dir = directory / "state"
        self.spool_path = self.state_dir / "spool"
        self.config = directory / "agent.yaml"
        values = {
            "collector_url": collector_url,
            "wallet": self.wallet,
            "state_dir": str(self.state_dir),
            "log_level": "DEBUG",
            **overrides,
        }
        self.config.write_text(yaml.safe_dump(values))
        self.processes: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def _argv(self, *args: str, prefix: tuple[str, ...] = ()) -> list[str]:
        return [
            *prefix,
            sys.executable,
            "-c",
            "from agent.cli import main; main()",
            "--config",
            str(self.config),
            *args,
        ]

    def command(
        self, *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess:
        """Run ``tassium-agent --config F ARGS`` to completion (under ``prefix``, a wrapper
        command, with ``env`` added to the environment)."""
        return subprocess.run(
            self._argv(*args, prefix=prefix),
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **(env or {})},
        )

    def enroll(self) -> subprocess.CompletedProcess:
        """``tassium-agent enroll`` as the owner goes through it: it prints the link to the
        collector's page and waits, and the owner signs the challenge there (as the page
        sends the wallet's signature)."""
        process = subprocess.Popen(
            self._argv("enroll"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        printed = []
        for line in process.stdout:
            printed.append(line)
            link = re.search(r"/enroll/([A-Za-z0-9_-]{43})$", line.strip())
            if link:
                challenge = f"{self.collector_url}/workers/enroll/challenge/{link[1]}"
                message = httpx.get(challenge, timeout=10).json()["message"]
                httpx.post(challenge, json={"signature": self.owner.sign(message)}, timeout=10)
                break
        stdout, stderr = process.communicate(timeout=60)
        return subprocess.CompletedProcess(
            process.args, process.returncode, "".join(printed) + stdout, stderr
        )

    def start(
        self, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
    ) -> subprocess.Popen:
        """Start ``tassium-agent run`` (under ``prefix``, with ``env`` added to the
        environment); its output goes to a log file of its own."""
        log = self.dir / f"run-{len(self.processes)}.log"
        with log.open("wb") as output:  # the child keeps its own descriptor
            process = subprocess.Popen(
                self._argv("run", prefix=prefix),
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        self.processes.append(process)
        self.logs.append(log)
        return process

    def spooled(self) -> list[dict]:
        """The heartbeat bodies waiting in the spool, oldest first (whole entries only)."""
        bodies = []
        for path in sorted(self.spool_path.glob("[0-9]*.json")):
            try:
                bodies.append(json.loads(path.read_bytes()))
            except FileNotFoundError:  # delivered meanwhile
                continue
        return bodies

    def output(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')}" for log in self.logs)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def agent_process(tmp_path):
    """``agent_process(collector_url, interval=1, ...)``: an agent configured by YAML (the
    keyword arguments override its settings), with a key, enrolled at the collector unless
    ``enroll=False`` (a stand-in collector enrolls nobody), its daemon started unless
    ``start=False``; every daemon is stopped after the test."""
    made: list[AgentProcess] = []

    def make(
        collector_url: str, *, start: bool = True, enroll: bool = True, **overrides
    ) -> AgentProcess:
        agent = AgentProcess(tmp_path / f"agent-{len(made)}", collector_url, overrides)
        made.append(agent)
        steps = [agent.command("keygen")] + ([agent.enroll()] if enroll else [])
        for done in steps:
            assert done.returncode == 0, f"tassium-agent {done.args}:\n{done.stdout}{done.stderr}"
        if start:
            agent.start()
        return agent

    yield make
    for agent in made:
        agent.stop()


@pytest.fixture
def serve_collector(serve_collector, backend):
    """The collector of tests/conftest.py for agents that beat every second or so: time runs
    fast here, so it stores heartbeats closer together than its min_interval (10 s). It names
    ``backend``, which the one it wraps depends on: pytest 8.4.0, the oldest allowed, leaves
    a dependency of an overridden fixture out of what a test's parametrization may name."""

    def start(**overrides):
        overrides.setdefault("min_interval", 0)
        return serve_collector(**overrides)

    return start
