"""A real Docker engine for the agent's tests: started once per run on a private socket,
and on a TCP port of 127.0.0.1 that only a client with a certificate of the test CA may use,
with a busybox image imported locally (nothing can be pulled here). TEST_DOCKER_HOST names
an engine already running instead (several test runs at once would fight over docker0),
TEST_DOCKER_TLS_HOST and TEST_DOCKER_CERT_PATH its TLS port and client certificates: so does
the controller of a pytest-xdist run, for its workers (tests/conftest.py)."""

import gc
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
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import docker
import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent import keys
from agent.service import Agent
from tests.agent.fake_engine import FakeEngine
from tests.factories import Wallet, agent_config

IMAGE = "local/busybox"


def dockerd_binary() -> str | None:
    """The dockerd this process can run: none without root."""
    binary = shutil.which("dockerd") or "/usr/sbin/dockerd"
    return binary if os.path.exists(binary) and os.geteuid() == 0 else None


# --- TLS certificates, as `docker` expects them in DOCKER_CERT_PATH -------------------------------


def _key_and_cert(
    name: str, issuer: tuple | None = None, *, usage=None, ip: str | None = None
) -> tuple:
    """A P-256 key and a certificate for it: a CA of its own without ``issuer`` (its key and
    certificate), else a leaf it signs for ``usage`` (server or client)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_key, issuer_cert = issuer or (key, None)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=issuer is not None,
                key_cert_sign=issuer is None,
                crl_sign=issuer is None,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False)
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address(ip))]), False
        )
    return key, builder.sign(issuer_key, hashes.SHA256())


def _write(directory: Path, stem: str, key, cert) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if cert is not None:
        (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = directory / ("key.pem" if stem == "cert" else f"{stem}-key.pem")
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)


def make_certificates(directory: Path) -> tuple[Path, Path]:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate, all signed by
    it: (the server's directory for dockerd's --tls* flags, the client's for DOCKER_CERT_PATH,
    holding ca.pem, cert.pem and key.pem as the docker CLI reads them)."""
    ca = _key_and_cert("tassium test CA")
    server = _key_and_cert("127.0.0.1", ca, usage=ExtendedKeyUsageOID.SERVER_AUTH, ip="127.0.0.1")
    client = _key_and_cert("tassium agent", ca, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    server_dir, client_dir = directory / "server", directory / "client"
    for where in (server_dir, client_dir):
        where.mkdir(parents=True, exist_ok=True)
        (where / "ca.pem").write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    _write(server_dir, "server", *server)
    (server_dir / "server.pem").rename(server_dir / "server-cert.pem")
    _write(client_dir, "cert", *client)
    return server_dir, client_dir


def make_foreign_client(directory: Path, ca_pem: Path) -> Path:
    """DOCKER_CERT_PATH trusting the test CA (``ca_pem``) but holding a client certificate of
    another CA, which the engine must refuse."""
    other = _key_and_cert("some other CA")
    _write(directory, "cert", *_key_and_cert("intruder", other,
                                             usage=ExtendedKeyUsageOID.CLIENT_AUTH))  # fmt: skip
    shutil.copy(ca_pem, directory / "ca.pem")
    return directory


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Dockerd:
    def __init__(
        self,
        host: str | None = None,
        options: tuple[str, ...] = (),
        *,
        tls_host: str | None = None,
        cert_path: str | None = None,
    ):
        self.options = options  # more dockerd flags, as a benchmark's --bridge=none
        self.dir = Path(tempfile.mkdtemp(prefix="tassium-dockerd-", dir="/tmp"))
        self.socket = self.dir / "docker.sock"
        self.host = host or f"unix://{self.socket}"
        # tcp://127.0.0.1:PORT with --tlsverify, and the client certificates for it.
        self.tls_host = tls_host
        self.cert_path = Path(cert_path) if cert_path else None
        self.pidfile = self.dir / "docker.pid"
        self.process: subprocess.Popen | None = None
        self._client: docker.DockerClient | None = None
        self.log = None

    def start(self, tls: bool = True) -> None:
        binary = dockerd_binary()
        if binary is None:
            pytest.fail("the agent tests need dockerd (apt-get install docker.io) and root")
        tls_options: list[str] = []
        if tls:
            server, self.cert_path = make_certificates(self.dir / "certs")
            self.tls_host = f"tcp://127.0.0.1:{_free_port()}"
            tls_options = [
                "--host",
                self.tls_host,
                "--tlsverify",
                "--tlscacert",
                str(server / "ca.pem"),
                "--tlscert",
                str(server / "server-cert.pem"),
                "--tlskey",
                str(server / "server-key.pem"),
            ]
        self.log = (self.dir / "log").open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                "--host",
                self.host,
                *tls_options,
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

    def environment(self) -> dict[str, str]:
        """What a test passes on to its workers (tests/conftest.py)."""
        found = {"TEST_DOCKER_HOST": self.host}
        if self.tls_host and self.cert_path:
            found |= {"TEST_DOCKER_TLS_HOST": self.tls_host,
                      "TEST_DOCKER_CERT_PATH": str(self.cert_path)}  # fmt: skip
        return found

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
    engine = Dockerd(
        shared,
        tls_host=os.environ.get("TEST_DOCKER_TLS_HOST"),
        cert_path=os.environ.get("TEST_DOCKER_CERT_PATH"),
    )
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


@pytest.fixture
def socket_dir():
    """A short directory for unix sockets: tmp_path can be longer than a socket path may be
    (108 bytes)."""
    directory = Path(tempfile.mkdtemp(prefix="tassium-fake-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)
    # A socket or ssh process left unclosed (ResourceWarning, an error here) fails the test
    # that leaked it, not whichever test happens to run when the garbage collector does.
    gc.collect()


@pytest.fixture
def engine(socket_dir):
    """The fake Engine API (tests/agent/fake_engine.py), for what a real engine will not do."""
    fake = FakeEngine(socket_dir / "docker.sock").start()
    yield fake
    fake.stop()


@pytest.fixture
def collect(tmp_path):
    """``collect(docker_host)``: one heartbeat from an Agent configured for that engine."""
    state = tmp_path / "state"
    key = keys.generate(state / "agent.key")

    def run(docker_host: str, docker_timeout: float = 10.0):  # the agent's per-call default
        config = agent_config(
            "http://127.0.0.1:9", state, docker_host=docker_host, docker_timeout=docker_timeout
        )
        agent = Agent(config, key)
        try:
            return agent.collect()
        finally:
            agent.close()

    return run
