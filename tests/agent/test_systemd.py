"""sd_notify: the Notifier's datagrams, and the daemon's READY, WATCHDOG and STOPPING as a
socket bound by the test (playing systemd) receives them."""

import signal
import socket
import uuid

import pytest

from agent.systemd import Notifier


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request, tmp_path):
    """A datagram socket bound like systemd's; yields (its NOTIFY_SOCKET value, the socket)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = name = str(tmp_path / "notify.sock")
    else:
        name = "@tassium-test-" + uuid.uuid4().hex
        address = "\0" + name[1:]
    sock.bind(address)
    sock.settimeout(30)
    yield name, sock
    sock.close()


def receive_until(sock: socket.socket, wanted: str, seen: list[str]) -> None:
    """Read datagrams (each within the socket's time-out) until one contains ``wanted``."""
    while True:
        message = sock.recv(4096).decode()
        seen.append(message)
        if wanted in message.splitlines():
            return


def test_the_notifier_sends_each_state(notify_socket):
    name, sock = notify_socket
    notifier = Notifier(name, watchdog_usec=4_000_000)
    assert notifier.ready("up") and notifier.watchdog() and notifier.stopping()
    assert [sock.recv(4096).decode() for _ in range(3)] == [
        "READY=1\nSTATUS=up",
        "WATCHDOG=1",
        "STOPPING=1",
    ]
    assert notifier.watchdog_interval == 2.0


def test_without_notify_socket_nothing_is_sent():
    notifier = Notifier.from_environ({"WATCHDOG_USEC": "oops"})
    assert notifier.ready() is False and notifier.watchdog_interval is None


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_daemon_notifies_ready_watchdog_and_stopping(
    serve_collector, agent_process, notify_socket, tmp_path
):
    name, sock = notify_socket
    collector = serve_collector()
    agent = agent_process(
        collector.url,
        start=False,
        interval=1,
        docker_host=f"unix://{tmp_path}/no-docker.sock",
        docker_timeout=1,
    )
    process = agent.start(env={"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "1000000"})
    seen: list[str] = []
    try:
        receive_until(sock, "READY=1", seen)
        receive_until(sock, "WATCHDOG=1", seen)
        receive_until(sock, "WATCHDOG=1", seen)
        process.send_signal(signal.SIGTERM)
        receive_until(sock, "STOPPING=1", seen)
        assert process.wait(timeout=30) == 0, agent.output()
    except (TimeoutError, AssertionError):
        pytest.fail(f"notifications so far {seen}\n{agent.output()}")
    assert seen[0].startswith("READY=1")
