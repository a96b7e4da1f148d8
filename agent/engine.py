"""The few Docker Engine API calls the agent makes, over the engine's socket with the standard
library: the Docker SDK (with requests and urllib3 under it) cost the daemon about 6 MB of
resident memory for four GET requests.

Every request has a connection of its own, closed whatever happens (the stats of many
containers are asked from several threads at once, and a connection that failed never
lingers), and every socket operation is bounded by the timeout. The API version is the
engine's own, asked once per client as ``docker.APIClient(version="auto")`` does."""

import http.client
import json
import socket
from urllib.parse import urlencode, urlsplit

# One-shot stats (no second sample to wait for) came with API 1.41, Docker 20.10.
ONE_SHOT_API = (1, 41)


class EngineError(Exception):
    """The engine could not be reached, or answered an error or something not JSON."""


class NotFound(EngineError):
    pass


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise EngineError(f"cannot connect to {self.socket_path}: {exc}") from None
        self.sock = sock


class Engine:
    """A Docker engine at ``unix:///path``, ``tcp://host:port`` or ``http(s)://host:port``."""

    def __init__(self, host: str, timeout: float):
        self.host = host
        self.timeout = timeout
        self._prefix: str | None = None
        self._api: tuple[int, ...] = ()

    def _connection(self) -> http.client.HTTPConnection:
        if self.host.startswith("unix://"):
            return _UnixConnection(
                "/" + self.host.removeprefix("unix://").lstrip("/"), self.timeout
            )
        parts = urlsplit(self.host.replace("tcp://", "http://", 1))
        if parts.scheme == "https":
            import ssl  # http.client has it loaded already

            return http.client.HTTPSConnection(
                parts.netloc, timeout=self.timeout, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(parts.netloc, timeout=self.timeout)

    def _get(self, path: str, query: dict | None = None) -> object:
        url = path + (f"?{urlencode(query)}" if query else "")
        connection = self._connection()
        try:
            connection.request("GET", url, headers={"Host": "docker"})
            response = connection.getresponse()
            content = response.read()
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, EngineError):
                raise
            raise EngineError(f"GET {path}: {exc or type(exc).__name__}") from None
        finally:
            connection.close()
        try:
            answer = json.loads(content) if content else None
        except ValueError:
            answer = None
            if response.status < 400:
                raise EngineError(f"GET {path}: the answer is not JSON") from None
        if response.status >= 400:
            message = answer.get("message") if isinstance(answer, dict) else None
            error = NotFound if response.status == 404 else EngineError
            raise error(f"{response.status} {response.reason} for GET {path}: {message}")
        return answer

    def _versioned(self, path: str, query: dict | None = None) -> object:
        return self._get(self._api_prefix() + path, query)

    def _api_prefix(self) -> str:
        if self._prefix is None:
            version = self._get("/version")
            api = version.get("ApiVersion") if isinstance(version, dict) else None
            try:
                self._api = tuple(int(part) for part in str(api).split("."))
            except ValueError:
                raise EngineError(f"the engine names no API version: {api!r}") from None
            self._prefix = f"/v{api}"
        return self._prefix

    def containers(self) -> list:
        """Every container's summary, running or not (``docker ps -a``)."""
        answer = self._versioned("/containers/json", {"all": 1})
        if not isinstance(answer, list):
            raise EngineError("the container list is not a list")
        return answer

    def inspect(self, container_id: str) -> dict:
        answer = self._versioned(f"/containers/{container_id}/json")
        return answer if isinstance(answer, dict) else {}

    def info(self) -> object:
        return self._versioned("/info")

    def stats(self, container_id: str) -> object:
        """One stats sample; an engine without one-shot (before API 1.41) waits for a second
        sample, about a second longer, and is as good for the agent's own delta."""
        query: dict[str, str] = {"stream": "False"}
        self._api_prefix()
        if self._api >= ONE_SHOT_API:
            query["one-shot"] = "True"
        return self._versioned(f"/containers/{container_id}/stats", query)
