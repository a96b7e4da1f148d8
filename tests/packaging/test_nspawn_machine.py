"""The harness itself: a machine boots a real systemd, sees files written through
machine.path, and reaches a server on the host's 127.0.0.1 (the later tests install against
a collector served there)."""

import socket
import threading

import pytest

from tests.packaging.nspawn import CommandFailed

pytestmark = pytest.mark.nspawn


def test_systemd_boots(machine):
    assert machine.run("systemctl is-system-running", check=False).stdout.strip() in (
        "running",
        "degraded",
    )
    assert machine.run(["cat", "/proc/1/comm"]).stdout == "systemd\n"


def test_a_file_written_on_the_host_is_seen_inside(machine):
    machine.path("/root/hello.txt").write_text("written on the host\n")
    assert machine.run("cat /root/hello.txt").stdout == "written on the host\n"
    machine.run("echo written inside > /root/reply.txt")
    assert machine.path("/root/reply.txt").read_text() == "written inside\n"


def test_the_environment_inside_is_clean(machine):
    env = machine.run("env", env={"EXTRA": "1"}).stdout.splitlines()
    assert sorted(env) == sorted(
        ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root", "EXTRA=1", "PWD=/"]
    )


def test_a_failing_command_shows_its_output(machine):
    with pytest.raises(CommandFailed, match="to stderr") as failure:
        machine.run("echo to stderr >&2; exit 3")
    assert failure.value.returncode == 3
    assert machine.run("exit 4", check=False).returncode == 4


def test_a_server_on_the_hosts_loopback_is_reachable_inside(machine):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        answer = threading.Thread(target=_answer_once, args=(server,), daemon=True)
        answer.start()
        result = machine.run(["curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{port}/"])
        answer.join(timeout=10)
    assert result.stdout == "hello from the host"


def _answer_once(server: socket.socket) -> None:
    connection, _ = server.accept()
    with connection:
        connection.recv(65536)
        body = b"hello from the host"
        connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
