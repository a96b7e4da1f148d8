"""A small fake of the Docker Engine API on a unix socket, for what a real engine will not do
on demand: answer 500, hang, or lose a container between listing and inspecting it.

It answers what the agent's Docker SDK client (agent/engine.py, ``docker.APIClient`` with
``version="auto"``) asks for: ``GET /version`` once (unversioned, to pick the API version),
then, under ``/v<that version>``, ``containers/json?all=1``, ``containers/<id>/json`` for
each one, ``containers/<id>/stats`` and ``info``; ``GET /_ping`` too, as the Docker CLI
starts with it. ``paths`` records every request, so a test can count them."""

import json
import re
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

API_VERSION = "1.41"
VERSION_PATH = r"/version"
LIST_PATH = r"/v[\d.]+/containers/json"
INSPECT_PATH = r"/v[\d.]+/containers/([^/]+)/json"
STATS_PATH = r"/v[\d.]+/containers/([^/]+)/stats"
INFO_PATH = r"/v[\d.]+/info"
_LIST = re.compile(LIST_PATH)
_INSPECT = re.compile(INSPECT_PATH)
_STATS = re.compile(STATS_PATH)
_INFO = re.compile(INFO_PATH)


class FakeEngine:
    """``engine.add("web", state="running", health="healthy", ports=[...])`` adds a
    container; ``engine.vanish(id)`` makes its inspect answer 404. ``engine.fail(500, on=R)``
    makes every request whose path matches the regular expression R answer 500;
    ``engine.hang(on=R)`` makes them wait, unanswered, until the engine is stopped (a dockerd
    that has stopped answering)."""

    def __init__(self, socket_path: Path):
        self.socket_path = socket_path
        self.host = f"unix://{socket_path}"
        self.summaries: dict[str, dict] = {}
        self.details: dict[str, dict] = {}
        self.failing: tuple[int, re.Pattern] | None = None
        self.hanging: re.Pattern | None = None
        self.slow: tuple[float, re.Pattern] | None = None
        self.paths: list[str] = []  # every request's path, in order
        self.stats: dict[str, dict] = {}  # a container's one-shot stats document, by id
        self.data_root: str | None = None  # DockerRootDir in GET /info
        self.api_version = API_VERSION  # what GET /version says; below 1.41, no one-shot stats
        self.queries: dict[str, list[str]] = {}  # the query strings sent to each path
        self.released = threading.Event()
        self.server = _Server(str(socket_path), _handler_for(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "FakeEngine":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.released.set()  # let hanging requests finish, so the server can shut down
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
        self.socket_path.unlink(missing_ok=True)

    def add(
        self,
        name: str,
        *,
        state: str = "running",
        health: str | None = None,
        ports: list[dict] | None = None,
        image: str = "local/busybox",
    ) -> str:
        container_id = f"{len(self.summaries) + 1:02d}" + "ab" * 31
        self.summaries[container_id] = {
            "Id": container_id,
            "Names": [f"/{name}"],
            "Image": image,
            "State": state,
            "Ports": ports or [],
        }
        status = {"Status": state, "Running": state == "running"}
        if health is not None:
            status["Health"] = {"Status": health, "FailingStreak": 0, "Log": []}
        self.details[container_id] = {"Id": container_id, "Name": f"/{name}", "State": status}
        return container_id

    def fail(self, status: int, on: str = ".*") -> None:
        self.failing = (status, re.compile(on))

    def hang(self, on: str = ".*") -> None:
        self.hanging = re.compile(on)

    def delay(self, seconds: float, on: str = ".*") -> None:
        """Answer the requests matching ``on`` after ``seconds``, as a real engine takes about
        a second for a container's stats."""
        self.slow = (seconds, re.compile(on))

    def vanish(self, container_id: str) -> None:
        """Still listed by /containers/json, but gone by the time it is inspected."""
        del self.details[container_id]

    def answer(self, path: str) -> tuple[int, object]:
        if self.failing is not None and self.failing[1].fullmatch(path):
            return self.failing[0], {"message": "fake engine failure"}
        if path == "/version":
            return 200, {"ApiVersion": self.api_version, "MinAPIVersion": "1.12", "Version": "fake"}
        if _LIST.fullmatch(path):
            return 200, list(self.summaries.values())
        if match := _INSPECT.fullmatch(path):
            found = self.details.get(match[1])
            if found is None:
                return 404, {"message": f"No such container: {match[1]}"}
            return 200, found
        if match := _STATS.fullmatch(path):
            found = self.stats.get(match[1])
            if found is None:
                return 404, {"message": f"No such container: {match[1]}"}
            return 200, found
        if _INFO.fullmatch(path) and self.data_root is not None:
            return 200, {"DockerRootDir": self.data_root}
        return 404, {"message": "page not found"}


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    # The agent asks for many containers' stats at once; socketserver's backlog of 5 makes a
    # unix-socket connect fail (EAGAIN) when the accept thread falls behind on a busy machine.
    request_queue_size = 128

    def handle_error(self, request, client_address) -> None:
        pass  # a client that gave up on a hanging request: its socket is gone, nothing to do


def _handler_for(engine: FakeEngine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path, query = urlsplit(self.path).path, urlsplit(self.path).query
            engine.paths.append(path)
            engine.queries.setdefault(path, []).append(query)
            if engine.slow is not None and engine.slow[1].fullmatch(path):
                engine.released.wait(engine.slow[0])
            if engine.hanging is not None and engine.hanging.fullmatch(path):
                engine.released.wait()
                self.close_connection = True
                return
            if path == "/_ping":
                self._send(200, b"OK", "text/plain")
                return
            status, document = engine.answer(path)
            self._send(status, json.dumps(document).encode(), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Api-Version", API_VERSION)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def address_string(self) -> str:
            return "unix"  # a unix socket's client address is an empty string

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's name
            pass

    return Handler
