"""A real Docker engine for the agent's tests: started once per run on a private socket,
with a busybox image imported locally (nothing can be pulled here). TEST_DOCKER_HOST names
an engine already running instead (several test runs at once would fight over docker0)."""

import io
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import docker
import pytest

IMAGE = "local/busybox"


class Dockerd:
    def __init__(self, host: str | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="tassium-dockerd-", dir="/tmp"))
        self.socket = self.dir / "docker.sock"
        self.host = host or f"unix://{self.socket}"
        self.pidfile = self.dir / "docker.pid"
        self.process: subprocess.Popen | None = None
        self._client: docker.DockerClient | None = None
        self.log = None

    def start(self) -> None:
        binary = shutil.which("dockerd") or "/usr/sbin/dockerd"
        if not os.path.exists(binary) or os.geteuid() != 0:
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
    for container in docker_client.containers.list(all=True, filters={"label": "tassium-test"}):
        if container.labels.get("tassium-test") == label["tassium-test"]:
            container.remove(force=True)
