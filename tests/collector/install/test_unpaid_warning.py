"""The served script says, last, when the machine it installed will not be paid: a heartbeat
without Docker counts as downtime, so an install without Docker (``--no-docker``), or with an
engine that does not answer, ends with a warning saying so and what to do."""

import shutil
import socketserver
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from collector.install import wheel
from tests.packaging import files_server
from tests.packaging.installer import installer
from tests.packaging.test_setup_script import WALLET, Worker, script_from

UNPAID = "this worker's heartbeats count as downtime, and it is not paid, until Docker runs here"
NO_DOCKER = (
    f"WARNING: Docker is not installed (--no-docker): {UNPAID} (run this line again without"
    " --no-docker; the agent finds Docker by itself)\n"
)
NOT_INSTALLED = (
    f"WARNING: Docker is not installed: {UNPAID} (install Docker; the agent finds it by itself)\n"
)
NOT_ANSWERING = (
    f"WARNING: Docker does not answer ('docker info' fails): {UNPAID} (start it: sudo"
    " systemctl start docker; the agent finds it by itself)\n"
)
# A docker that records each call and answers `docker info` with the status the test says:
# "starting" fails the first call only, as an engine installed a moment ago may.
DOCKER = """#!/bin/sh
echo "$*" >>{calls}
[ {status} != starting ] || {{ [ -e {calls}.once ] && exit 0; : >{calls}.once; exit 1; }}
exit {status}
"""


@pytest.fixture
def served(client) -> str:
    response = client.get(f"/setup.sh?wallet={WALLET}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def warn_if_unpaid(script: str, tmp_path: Path, docker: int | str | None, **values: str):
    """The served script's check, alone, on a PATH with a docker that answers ``docker info``
    as DOCKER says (None: no docker at all)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sleep", "timeout", "curl"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    calls = tmp_path / "docker-calls"
    if docker is not None:
        (bin_dir / "docker").write_text(DOCKER.format(calls=calls, status=docker))
        (bin_dir / "docker").chmod(0o755)
    functions = installer(script).removesuffix('main "$@"\n')
    driver = "".join(f"{name}={value}\n" for name, value in values.items()) + "warn_if_unpaid\n"
    result = subprocess.run(
        [shutil.which("bash"), "-c", functions + driver],
        cwd=tmp_path,
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    asked = calls.read_text().splitlines() if calls.exists() else []
    return result, asked


def test_the_served_script_warns_last(served):
    main = served.partition("\nmain() {\n")[2].partition("\n}\n")[0]
    assert main.endswith(
        'step "Done: this worker sends heartbeats for $WALLET to $COLLECTOR_URL"'
        "\n    warn_if_unpaid"
    )
    assert (
        "--no-docker          do not install Docker when it is missing (without Docker,\n"
        "                       heartbeats count as downtime: the worker is not paid)" in served
    )


@pytest.mark.parametrize(
    "install_docker, said", [("no", NO_DOCKER), ("yes", NOT_INSTALLED)], ids=["no-docker", "none"]
)
def test_without_docker_the_owner_is_told_the_worker_is_not_paid(
    served, tmp_path, install_docker, said
):
    result, _ = warn_if_unpaid(served, tmp_path, None, INSTALL_DOCKER=install_docker)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", said)


def test_a_docker_that_does_not_answer_is_warned_about(served, tmp_path):
    result, asked = warn_if_unpaid(served, tmp_path, 1, DOCKER_WAIT=0)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", NOT_ANSWERING)
    assert asked == ["info"]


def test_a_docker_still_starting_is_waited_for(served, tmp_path):
    result, asked = warn_if_unpaid(served, tmp_path, "starting", DOCKER_WAIT=5)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert asked == ["info", "info"]


def test_a_docker_that_answers_says_nothing(served, tmp_path):
    result, asked = warn_if_unpaid(served, tmp_path, 0)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert asked == ["info"]


def test_an_install_with_no_docker_ends_with_the_warning(make_app, tmp_path):
    # The whole installer, on a machine whose every changing command is a stub (no docker).
    root = tmp_path / "worker"
    root.mkdir()
    built, lock = wheel.current(), wheel.lock()
    genuine = {f"/packages/{p.filename}": p.content for p in (built, lock)}
    with files_server.serving(files_server.files(genuine)) as url:
        result = Worker(root).install(script_from(make_app, url), "--no-docker")
    assert (result.returncode, result.stderr) == (0, NO_DOCKER)
    assert result.stdout.endswith(
        f"==> Done: this worker sends heartbeats for {WALLET.lower()} to {url}\n"
    )


SOCKET = "unix:///run/user/999/docker.sock"
NOT_ANSWERING_ROOTLESS = (
    f"WARNING: the rootless Docker at {{socket}} does not answer: {UNPAID} (set it up as"
    ' tassium, with loginctl enable-linger tassium; see "Without the docker group: rootless'
    " Docker\" in the owners' guide)\n"
)


class Ping(BaseHTTPRequestHandler):
    """The one call of Docker's API the check makes."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = b"OK" if self.path == "/_ping" else b""
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def engine() -> Iterator[str]:
    """A socket that answers /_ping as a Docker engine does; its unix:// URL. In a short
    directory of its own: a socket's path holds at most 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="tsk") as directory:
        path = f"{directory}/docker.sock"
        with socketserver.UnixStreamServer(path, Ping) as server:
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                yield f"unix://{path}"
            finally:
                server.shutdown()
                thread.join()


def test_a_rootless_docker_that_does_not_answer_is_warned_about(served, tmp_path):
    # Even with the system's docker answering: the agent uses the rootless one only.
    result, asked = warn_if_unpaid(served, tmp_path, 0, DOCKER_HOST_URL=SOCKET)
    said = NOT_ANSWERING_ROOTLESS.format(socket=SOCKET)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", said)
    assert asked == []


def test_a_rootless_docker_that_answers_says_nothing(served, tmp_path):
    with engine() as url:
        result, asked = warn_if_unpaid(served, tmp_path, None, DOCKER_HOST_URL=url)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert asked == []
