"""A small HTTP server on this machine's 127.0.0.1, for what stands between a worker and its
collector in the install tests: one that hands out files, or a proxy that changes them on the
way. Machines booted by nspawn share the host's network, so they reach it too."""

import http.server
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

from tests.conftest import free_port

# What the server answers a GET of a path (with its query) sent with a Host header: a status
# and a body.
Answer = Callable[[str, str], tuple[int, bytes]]


@contextmanager
def serving(answer: Answer) -> Iterator[str]:
    """Serve ``answer`` until the block ends; yields the server's URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            status, body = answer(self.path, self.headers.get("Host", ""))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass  # the tests' output is theirs

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def files(served: dict[str, bytes]) -> Answer:
    """Each path of ``served`` answered with its bytes, anything else with a 404."""
    return lambda path, _: (200, served[path]) if path in served else (404, b"not here\n")


def one_byte_changed(data: bytes) -> bytes:
    """``data`` with one bit of its middle byte flipped: the same length, another sha256."""
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]


def tampering_proxy(upstream: str, changed: str) -> Answer:
    """A reverse proxy to ``upstream`` that passes on the Host header it was sent (so the
    collector's script points back through it) and changes one byte of every answer whose
    path ends with ``changed``: the man in the middle that a pinned install must notice."""

    def answer(path: str, host: str) -> tuple[int, bytes]:
        response = httpx.get(upstream + path, headers={"Host": host}, timeout=30)
        body = response.content
        if path.endswith(changed):
            body = one_byte_changed(body)
        return response.status_code, body

    return answer
