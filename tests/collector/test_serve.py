"""Serving to untrusted clients: the collector under gunicorn's gevent workers keeps accepting
signed heartbeats while slow and idle connections hold on, closes connections whose headers
or body do not arrive in time, and answers malformed or oversized bodies (parsed by gunicorn
itself, over raw sockets) with a 4xx and a JSON error."""

import gc
import json
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import httpx
import pytest

from collector.config import ConfigError, load_config
from collector.serve import CollectorServer, raise_open_file_limit
from collector.store import db
from tests.collector.uptime.test_heartbeats import SERVER_TIME
from tests.conftest import free_port, launch_collector
from tests.factories import FakeWorker
from tests.hostile_clients import (
    SlowHeaderClients,
    idle_keepalive_connections,
    read_response,
    still_open,
)
from tests.polling import wait_for


@pytest.fixture
def backend() -> str:
    """SQLite only: what these tests exercise is the serving, not the database."""
    return "sqlite"


@pytest.fixture(autouse=True)
def open_files():
    """A thousand connections are a thousand descriptors on this side too."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if raise_open_file_limit(1500) < 1500:
        pytest.fail("the open-file limit is below 1500: raise the hard limit (ulimit -Hn)")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def address(served) -> tuple[str, int]:
    parts = urlsplit(served.url)
    return parts.hostname, parts.port


def signed_heartbeats(served, count: int, *, pause: float = 0.0) -> list[int]:
    """Enroll ``count`` fresh workers (more than the enrollment rate limit lets one address
    enroll: the collector has that limit off) and send one signed heartbeat from each, every
    request on a new connection with a 5 s time-out; the statuses of the heartbeats. A
    collector whose workers were all held by other clients would time these out."""
    statuses = []
    for _ in range(count):
        worker = FakeWorker()
        enrolled = worker.enroll_at(served.url)
        assert enrolled.status_code == 201, enrolled.text
        raw, headers = worker.signed(worker.heartbeat_body())
        beat = httpx.post(served.url + "/heartbeat", content=raw, headers=headers, timeout=5)
        statuses.append(beat.status_code)
        time.sleep(pause)
    return statuses


def raw_exchange(served, request: bytes, *, shut_write: bool = False) -> tuple[int, dict, bool]:
    """Send bytes as they are, read one response: its status, its JSON body, and whether the
    server then closed the connection."""
    with socket.create_connection(address(served), timeout=15) as sock:
        sock.sendall(request)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        status, body = read_response(sock)
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
    return status, json.loads(body), closed


def told_the_time(body: dict) -> dict:
    """A heartbeat route's answer less its serverTime, which every one of them carries (here a
    refusal made before the route ran)."""
    assert SERVER_TIME.fullmatch(body.pop("serverTime")), body
    return body


# --- slow and idle clients --------------------------------------------------------------------


@pytest.mark.slow
def test_fifty_slow_header_connections_leave_signed_heartbeats_flowing(serve_collector):
    # A header deadline longer than the test, so that the slow connections are held throughout.
    served = serve_collector(processes=2, header_timeout=60, rate_limit_enrollment="0")
    with SlowHeaderClients(*address(served), count=50) as slow:
        time.sleep(2)  # every slow connection has started its request
        statuses = signed_heartbeats(served, 24, pause=0.4)
        assert slow.open_count == 50
        assert slow.lifetimes == []  # none was closed: all fifty held on meanwhile
    assert statuses == [200] * 24
    assert served.heartbeat_statuses() == [200] * 24


def test_slow_header_connections_are_closed_at_the_header_deadline(serve_collector):
    served = serve_collector(processes=2, header_timeout=3, rate_limit_enrollment="0")
    started = time.monotonic()
    with SlowHeaderClients(*address(served), count=50) as slow:
        wait_for(lambda: len(slow.lifetimes) == 50, "the server closing all 50", timeout=20)
        lived = list(slow.lifetimes)
    # Closed by the deadline, not for sending too much: a byte a second for 3 s is no limit.
    assert all(2 <= seconds < 10 for seconds in lived), lived
    assert time.monotonic() - started < 20
    assert signed_heartbeats(served, 3) == [200] * 3


@pytest.mark.slow
def test_a_thousand_idle_keepalive_connections_leave_signed_heartbeats_flowing(serve_collector):
    served = serve_collector(processes=2, header_timeout=120, rate_limit_enrollment="0")
    host, port = address(served)
    with idle_keepalive_connections(host, port, 1000) as idle:
        with SlowHeaderClients(host, port, count=50):
            statuses = signed_heartbeats(served, 20)
        assert still_open(idle) == 1000
    assert statuses == [200] * 20


def test_idle_keepalive_connections_are_closed_at_the_header_deadline(serve_collector):
    served = serve_collector(processes=1, header_timeout=2)
    with idle_keepalive_connections(*address(served), 20) as idle:
        wait_for(lambda: still_open(idle) == 0, "the server closing idle connections", 15)


def test_a_stop_closes_idle_connections_instead_of_waiting_out_their_deadline(serve_collector):
    # One process: it has answered /healthz, so it is up. A second one may still be booting,
    # and a worker that gets SIGTERM before it installs its own handlers never sees it (it
    # still has gunicorn's master handlers from the fork): a gunicorn race, not this feature.
    served = serve_collector(processes=1, header_timeout=120)
    host, port = address(served)
    with idle_keepalive_connections(host, port, 20) as idle:
        with SlowHeaderClients(host, port, count=5):
            started = time.monotonic()
            served.stop()
            stopped_after = time.monotonic() - started
        # Closed without an answer: a killed wait is a client gone, not a 500 to send.
        assert [sock.recv(100) for sock in idle] == [b""] * 20
    assert served.process.returncode == 0, served.log.read_text()
    # ServedCollector.stop kills after 15 s; the idle connections alone would hold it 120 s.
    assert stopped_after < 15, stopped_after
    # gunicorn logs "Error handling request" for what it answers with a 500.
    assert "Error handling request" not in served.log.read_text()


# --- bodies as gunicorn parses them -----------------------------------------------------------


def chunked(path: str, *chunks: bytes, tail: bytes = b"0\r\n\r\n") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: collector\r\nContent-Type: application/json\r\n"
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    return head.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + body + tail


def test_a_signed_heartbeat_sent_chunked_is_accepted(serve_collector):
    served = serve_collector(processes=1)
    worker = FakeWorker()
    assert worker.enroll_at(served.url).status_code == 201
    raw, headers = worker.signed(worker.heartbeat_body())
    # A generator has no length: httpx sends it chunked.
    beat = httpx.post(
        served.url + "/heartbeat", content=iter([raw[:10], raw[10:]]), headers=headers
    )
    assert beat.status_code == 200, beat.text


def test_a_malformed_chunked_body_is_a_bad_request_and_closes(serve_collector):
    served = serve_collector(processes=1)
    request = chunked("/deployments", b'{"name": ', tail=b"zz\r\nabc\r\n0\r\n\r\n")
    status, body, closed = raw_exchange(served, request)
    assert status == 400
    assert body["error"].startswith("malformed request body: ")
    # Where the next request would start is unknown: the connection ends.
    assert closed
    assert "Traceback" not in served.log.read_text()


def test_a_chunked_body_over_the_limit_is_too_large(serve_collector):
    # A short header deadline: raw_exchange waits for the idle connection to be closed.
    served = serve_collector(processes=1, max_body_bytes=1024, header_timeout=1)
    request = chunked("/heartbeat", *[b"x" * 512] * 3)
    status, body, _ = raw_exchange(served, request)
    assert (status, told_the_time(body)) == (
        413,
        {"error": "request body is larger than 1024 bytes"},
    )
    # At the limit exactly, the body is read and judged on its content.
    status, body, _ = raw_exchange(served, chunked("/heartbeat", *[b"x" * 512] * 2))
    assert status == 400
    assert "not valid JSON" in body["error"]


def test_a_body_shorter_than_its_content_length_is_a_bad_request(serve_collector):
    served = serve_collector(processes=1)
    request = (
        b"POST /heartbeat HTTP/1.1\r\nHost: collector\r\nContent-Length: 100\r\n\r\n"
        b'{"walletAddress":'
    )
    status, body, _ = raw_exchange(served, request, shut_write=True)
    assert (status, told_the_time(body)) == (
        400,
        {"error": "request body ended after 17 of 100 bytes"},
    )


@pytest.mark.parametrize(
    "request_head",
    [
        b"POST /heartbeat HTTP/1.1\r\nHost: collector\r\nContent-Length: 100\r\n\r\n{",
        b"POST /heartbeat HTTP/1.1\r\nHost: collector\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{",
    ],
    ids=["content-length", "chunked"],
)
def test_a_body_that_stalls_times_out_and_closes(serve_collector, request_head):
    served = serve_collector(processes=1, body_timeout=2)
    started = time.monotonic()
    status, body, closed = raw_exchange(served, request_head)
    assert time.monotonic() - started >= 2
    assert (status, told_the_time(body)) == (
        408,
        {"error": "request body did not arrive within 2 seconds"},
    )
    assert closed


def test_a_body_trickled_a_byte_a_second_times_out_at_the_deadline(serve_collector):
    """gunicorn keeps reading until it has what was asked for: a client that sends a byte now
    and then never lets a single read time out, so the deadline covers the whole body."""
    served = serve_collector(processes=1, body_timeout=3)
    with socket.create_connection(address(served), timeout=15) as sock:
        sock.sendall(b"POST /heartbeat HTTP/1.1\r\nHost: collector\r\nContent-Length: 1000\r\n\r\n")
        started = time.monotonic()
        answer = select.poll()
        answer.register(sock, select.POLLIN)
        while not answer.poll(500):
            assert time.monotonic() - started < 12, "no answer while the body trickled in"
            sock.sendall(b"x")
        status, body = read_response(sock)
    assert (status, told_the_time(json.loads(body))) == (
        408,
        {"error": "request body did not arrive within 3 seconds"},
    )


# --- configuration ----------------------------------------------------------------------------


def test_time_outs_and_connection_limits_are_validated(tmp_path):
    path = tmp_path / "collector.yaml"
    path.write_text("header_timeout: 0\nbody_timeout: 9999\nconnections_per_process: 5\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    problems = "\n".join(raised.value.problems)
    for key in ("header_timeout", "body_timeout", "connections_per_process"):
        assert key in problems
    path.write_text("header_timeout: 5\nbody_timeout: 20\nconnections_per_process: 300\n")
    config = load_config(path, environ={})
    assert (config.header_timeout, config.body_timeout, config.connections_per_process) == (
        5,
        20,
        300,
    )


def test_serve_raises_the_open_file_limit_to_the_hard_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
    assert raise_open_file_limit(100) == hard
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)


def test_a_serving_process_keeps_what_it_loaded_out_of_the_collectors_reach(config, tmp_path):
    server = CollectorServer(config, str(tmp_path))
    gc.unfreeze()
    try:
        app = server.load()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        assert gc.is_tracked(app.url_map) and not any(
            app.url_map is found for found in gc.get_objects(generation=2)
        )
    finally:
        gc.unfreeze()
        db.database.close_all()


# --- who it listens to --------------------------------------------------------------------------


def test_serve_refuses_to_listen_beyond_loopback_without_an_api_token(config_file):
    port = free_port()
    path = config_file(host="0.0.0.0", port=port)  # noqa: S104 - what is refused
    ran = subprocess.run(
        [sys.executable, "-c", "from collector.cli import main; main()", "--config", str(path),
         "serve"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ran.returncode == 1
    assert "refusing to listen on 0.0.0.0 without an api_token: set api_token" in ran.stderr
    assert "insecure_open_network: true" in ran.stderr
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


@pytest.mark.slow
def test_insecure_open_network_serves_without_a_token_and_says_so(config_file, tmp_path):
    port = free_port()
    path = config_file(host="0.0.0.0", port=port, insecure_open_network=True)  # noqa: S104
    served = launch_collector(path, port, tmp_path / "serve.log")
    try:
        assert "insecure_open_network: listening on 0.0.0.0" in served.log.read_text()
        refused = httpx.post(served.url + "/payouts", json={}, timeout=10)
        assert refused.status_code == 403 and "no api_token" in refused.json()["error"]
    finally:
        served.stop(signal.SIGINT)


# --- one line per mistake, and quiet stops -------------------------------------------------------


def serve_process(path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from collector.cli import main; main()", "--config", str(path),
         "serve", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_port_in_use_is_one_line_at_once(config_file):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        started = time.monotonic()
        ran = serve_process(config_file(host="127.0.0.1", port=port))
        took = time.monotonic() - started
    assert ran.returncode == 1
    assert ran.stderr.splitlines()[-1] == (
        f"Error: port {port} on 127.0.0.1 is in use: stop what holds it, or set port "
        "(TASSIUM_PORT) to another"
    )
    # Not gunicorn's five retries a second apart, two ERROR lines each.
    assert "gunicorn" not in ran.stderr and "ERROR" not in ran.stderr
    assert took < 5, took


def test_an_address_not_of_this_machine_is_one_line(config_file):
    # TEST-NET-1 (RFC 5737), which no machine has; beyond loopback, so with an api_token.
    path = config_file(host="192.0.2.1", port=free_port(), api_token="t" * 32)
    ran = serve_process(path)
    assert ran.returncode == 1
    assert ran.stderr.splitlines()[-1] == (
        "Error: cannot listen on 192.0.2.1: not an address of this machine: set host"
    )


def test_serve_without_a_database_names_the_file_and_creates_none(config_file, tmp_path):
    path = tmp_path / "none.db"
    ran = serve_process(config_file(database_url=f"sqlite:///{path}", port=free_port()))
    assert ran.returncode == 1
    assert ran.stderr.splitlines() == [
        f"Error: there is no database at {path}: run tassium-collector migrate (or serve "
        "--migrate) to create it, or set database_url (TASSIUM_DATABASE_URL) to the collector's "
        "database"
    ]
    assert not path.exists()


def test_serve_migrate_creates_the_database_it_names(config_file, tmp_path):
    path = tmp_path / "new.db"
    port = free_port()
    served = launch_collector(
        config_file(database_url=f"sqlite:///{path}", port=port, migrate_on_start=True),
        port,
        tmp_path / "serve.log",
    )
    served.stop()
    assert path.is_file()
    assert f"INFO collector.cli: using the database {path}" in served.log.read_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_clean_stop_logs_no_traceback(serve_collector, sig):
    # One process: once it answered /healthz it is fully started (see the test above that
    # stops one with idle connections).
    served = serve_collector(processes=1)
    assert httpx.get(served.url + "/healthz", timeout=5).status_code == 200
    served.stop(sig)
    assert served.process.returncode == 0
    log = served.log.read_text()
    assert "Worker exiting" in log and "Shutting down: Master" in log
    assert "Traceback" not in log and "Exception ignored" not in log, log
