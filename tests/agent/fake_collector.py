"""A stand-in for what sits at the collector's address when it is not a healthy collector:
a captive portal, a server that trickles its answer, one too slow for a backlog. Each test
gives it an ``answer(request) -> Reply`` function; it records every request it received.

The real collector (the ``serve_collector`` fixture) is used wherever it can show the
behaviour; this is for what it cannot produce on demand."""

import http.server
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from protocol.times import format_timestamp, utcnow


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes
    headers: dict[str, str]

    def json(self) -> object:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    content_type: str = "application/json"
    body: bytes = b"{}"
    delay: float = 0.0  # before answering
    trickle: float = 0.0  # seconds between single bytes of the body
    headers: dict[str, str] = field(default_factory=dict)


def collector_json(code: int = 200, **fields) -> Reply:
    """An answer shaped as the collector's, with its clock."""
    return Reply(
        code, body=json.dumps({**fields, "serverTime": format_timestamp(utcnow())}).encode()
    )


def accept_everything(request: Request) -> Reply:
    """The collector's answers for heartbeats that are all accepted, one or a batch."""
    if request.path == "/heartbeats":
        results = [{"status": 200, "accepted": True} for _ in request.json()["heartbeats"]]
        return collector_json(results=results)
    if request.path == "/heartbeat":
        return collector_json(accepted=True)
    return collector_json(status="ok", maxSkew=120)


class FakeCollector:
    """``tls``: a server context (its certificate for localhost), to be an https:// collector."""

    def __init__(
        self,
        answer: Callable[[Request], Reply] = accept_everything,
        tls: ssl.SSLContext | None = None,
    ):
        self.answer = answer
        self.requests: list[Request] = []
        # Connections accepted (TLS handshakes done), to see keep-alive reuse them.
        self.connections = 0
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                fake.connections += 1
                super().setup()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    self.command, self.path, self.rfile.read(length), dict(self.headers)
                )
                fake.requests.append(request)
                reply = fake.answer(request)
                time.sleep(reply.delay)
                self.send_response_only(reply.status)
                if "Date" not in reply.headers:
                    self.send_header("Date", self.date_time_string())
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    if reply.trickle:
                        for byte in reply.body:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(reply.trickle)
                    else:
                        self.wfile.write(reply.body)
                except OSError:  # the agent gave up and closed
                    self.close_connection = True

            do_GET = do_POST = do_PATCH = do_DELETE = _serve  # noqa: N815 - the stdlib's names

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        if tls is not None:
            # A client refusing the certificate fails the handshake in accept(), an OSError
            # socketserver drops: no connection and no request is counted.
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://localhost:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def heartbeats(self) -> list[dict]:
        """Every heartbeat body received, in order, single or batched."""
        bodies = []
        for request in self.requests:
            if request.path == "/heartbeat":
                bodies.append(request.json())
            elif request.path == "/heartbeats":
                bodies += [json.loads(e["body"]) for e in request.json()["heartbeats"]]
        return bodies

    def __enter__(self) -> "FakeCollector":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
