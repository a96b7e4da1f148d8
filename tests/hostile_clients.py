"""Clients a public collector must survive, over raw sockets: connections that send their
headers a byte a second, and crowds of idle keep-alive connections. Used by
tests/collector/test_serve.py and bench/slow_clients.py."""

import itertools
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# A request line and headers that never end: gunicorn waits for the blank line.
_SLOW_REQUEST = b"POST /heartbeat HTTP/1.1\r\nHost: collector\r\nX-Slow: "


def _closed_by_peer(sock: socket.socket) -> bool:
    """True when the server has closed (or reset) the connection. The collector never sends
    anything unasked on these connections, so a readable socket means end of file."""
    # poll, not select: select refuses descriptors above 1023, and a crowd has more.
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class SlowHeaderClients:
    """``count`` connections, each sending one byte of an endless request header every
    ``interval`` seconds from a thread of its own. With ``reopen``, a connection the server
    closes is opened again, as an attacker would; every such closing is recorded with how long
    the connection had lived."""

    def __init__(
        self, host: str, port: int, count: int, *, interval: float = 1.0, reopen: bool = False
    ):
        self.address = (host, port)
        self.count = count
        self.interval = interval
        self.reopen = reopen
        self.lifetimes: list[float] = []  # seconds each closed connection had lived
        self._open: list[tuple[socket.socket, float, itertools.cycle]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)

    def __enter__(self) -> "SlowHeaderClients":
        self._open = [self._connect() for _ in range(self.count)]
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()
        for sock, _, _ in self._open:
            sock.close()

    @property
    def open_count(self) -> int:
        return len(self._open)

    def _connect(self) -> tuple[socket.socket, float, itertools.cycle]:
        sock = socket.create_connection(self.address, timeout=10)
        sock.setblocking(False)
        payload = itertools.chain(_SLOW_REQUEST, itertools.repeat(ord("a")))
        return sock, time.monotonic(), payload

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            still_open = []
            for sock, opened, payload in self._open:
                if not _closed_by_peer(sock):
                    try:
                        sock.send(bytes([next(payload)]))
                        still_open.append((sock, opened, payload))
                        continue
                    except OSError:
                        pass
                self.lifetimes.append(time.monotonic() - opened)
                sock.close()
                if self.reopen:
                    still_open.append(self._connect())
            self._open = still_open


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(
        int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed inside the response body")
        body += chunk
    return int(lines[0].split()[1]), body


@contextmanager
def idle_keepalive_connections(host: str, port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that have each been answered one ``GET /healthz`` and stay open,
    idle, as keep-alive connections of a crowd do, until the block ends. All requests are sent
    before any answer is read, so opening them takes about as long as the server needs to
    answer them."""
    sockets = []
    try:
        sockets.extend(socket.create_connection((host, port), timeout=30) for _ in range(count))
        request = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        for sock in sockets:
            sock.sendall(request)
        statuses = {read_response(sock)[0] for sock in sockets}
        if statuses != {200}:
            raise AssertionError(f"/healthz answered {statuses} to the idle connections")
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def still_open(sockets: list[socket.socket]) -> int:
    """How many of these connections the server has not closed."""
    return sum(not _closed_by_peer(sock) for sock in sockets)
