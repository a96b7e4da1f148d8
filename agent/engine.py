"""The Docker engine, as the agent reads it: a thin adapter over the Docker SDK's low-level
``docker.APIClient``, whose answers are the Engine API's own JSON documents.

One client serves the agent's whole life: its connections are kept for the next tick, and
the engine's API version (``version="auto"``, a ``GET /version``) is asked once, when the
client is first made. A client that could not be made (Docker down at start) is tried again
on the next call, so a daemon started before Docker finds it once it is up.

Where the engine is follows the ``docker`` CLI: the agent's own ``docker_host`` (as ``-H``),
else ``DOCKER_HOST``, else the current Docker context (``DOCKER_CONTEXT``, else
``currentContext`` in the Docker config), else the local socket; TLS from
``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH``, or from the context. The environment is the
one agent/config.py captured, passed in, never read here.

Every failure is an ``EngineError`` (``NotFound`` for a 404) with a sentence naming the
engine and what went wrong, so that the heartbeat says ``dockerAvailable: false``."""

import functools
import json
import math
import socket
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit

import docker
import requests.exceptions
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
from docker.context.config import get_context_id
from docker.tls import TLSConfig
from docker.transport.basehttpadapter import BaseHTTPAdapter

if TYPE_CHECKING:
    from agent.config import AgentConfig

DEFAULT_HOST = "unix:///var/run/docker.sock"
# One-shot stats (no second sample to wait for) came with API 1.41, Docker 20.10.
ONE_SHOT_API = (1, 41)
# Connections kept open to the engine: one for each stats call in flight at once
# (agent/containers.py's STATS_WORKERS), so that none is opened and dropped every tick.
POOL_SIZE = 16


class EngineError(Exception):
    """The engine could not be reached, or answered an error or something not JSON."""


class NotFound(EngineError):
    pass


class Engine:
    """The Docker engine the agent reports on, reached through one ``docker.APIClient``.

    ``host`` is the agent's ``docker_host`` (None: as the docker CLI finds it, from
    ``environment``); ``timeout`` bounds every socket operation of every call."""

    def __init__(
        self,
        host: str | None,
        timeout: float,
        environment: Mapping[str, str] | None = None,
        *,
        pool_size: int = POOL_SIZE,
    ):
        self.host = host
        self.timeout = timeout
        self.environment = dict(environment or {})
        self.pool_size = pool_size
        self._client: docker.APIClient | None = None
        self._address: str | None = None
        self._lock = threading.Lock()  # the stats threads may all find no client yet

    @classmethod
    def from_config(cls, config: "AgentConfig") -> "Engine":
        """The engine an ``AgentConfig`` names."""
        return cls(config.docker_host, config.docker_timeout, dict(config.docker_environment))

    @property
    def address(self) -> str:
        """Where the engine is (or is looked for), for messages."""
        if self._address is None:
            try:
                self._address = self._where()[0]
            except (EngineError, docker.errors.DockerException):
                return self.host or "the Docker engine"
        return self._address

    def containers(self) -> list:
        """Every container's summary, running or not (``docker ps -a``)."""
        answer = self._call("GET /containers/json", lambda c: c.containers(all=True))
        if not isinstance(answer, list):
            raise EngineError(
                f"the engine at {self.address} sent a container list that is not a list"
            )
        return answer

    def inspect(self, container_id: str) -> dict:
        answer = self._call(
            f"GET /containers/{container_id}/json", lambda c: c.inspect_container(container_id)
        )
        return answer if isinstance(answer, dict) else {}

    def info(self) -> object:
        return self._call("GET /info", lambda c: c.info())

    def stats(self, container_id: str) -> object:
        """One stats sample; an engine without one-shot (before API 1.41) waits for a second
        sample, about a second longer, and is as good for the agent's own delta."""

        def ask(client: docker.APIClient) -> object:
            api = tuple(int(part) for part in client.api_version.split("."))
            if api >= ONE_SHOT_API:
                return client.stats(container_id, stream=False, one_shot=True)
            return client.stats(container_id, stream=False)

        return self._call(f"GET /containers/{container_id}/stats", ask)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # --- the client ---------------------------------------------------------------------------

    def _call(self, what: str, request):
        client = self._connect()
        try:
            return request(client)
        except Exception as exc:
            error = self._error(exc, what)
            if error is exc:
                raise
            raise error from exc

    def _connect(self) -> docker.APIClient:
        with self._lock:
            if self._client is not None:
                return self._client
            address, tls = self._where()
            self._address = address
            try:
                self._client = _client(address, tls, self.timeout, self.pool_size)
            except EngineError:
                raise
            except Exception as exc:
                # APIClient wraps a failed GET /version in a DockerException of its own.
                cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
                error = self._error(cause, "GET /version")
                if error is cause:
                    raise
                raise error from exc
            return self._client

    def _where(self) -> tuple[str, TLSConfig | bool]:
        """The engine's address and TLS settings, as the docker CLI finds them: ``-H`` (the
        agent's docker_host), DOCKER_HOST, the current context, the local socket."""
        environment = self.environment
        try:
            # kwargs_from_env reads os.environ when given an empty mapping.
            settings = docker.utils.kwargs_from_env(environment=environment) if environment else {}
        except docker.errors.TLSParameterError as exc:
            where = environment.get("DOCKER_CERT_PATH") or "~/.docker"
            raise EngineError(
                f"DOCKER_TLS_VERIFY/DOCKER_CERT_PATH: {exc} (the docker CLI reads ca.pem, "
                f"cert.pem and key.pem in {where})"
            ) from None
        tls = settings.get("tls", False)
        if self.host:
            return self.host, tls
        if settings.get("base_url"):
            return settings["base_url"], tls
        return _context(environment) or (DEFAULT_HOST, tls)

    def _error(self, exc: Exception, what: str) -> Exception:
        where = f"the engine at {self._address or self.host or DEFAULT_HOST}"
        if isinstance(exc, docker.errors.APIError):
            response = exc.response
            reason = response.reason if response is not None else ""
            path = urlsplit(response.url).path if response is not None else what
            error = NotFound if isinstance(exc, docker.errors.NotFound) else EngineError
            return error(
                f"{where} answered {exc.status_code} {reason} to GET {path}: "
                f"{exc.explanation or 'no explanation'}"
            )
        if isinstance(exc, requests.exceptions.Timeout | TimeoutError):
            return EngineError(f"{where} did not answer {what} within {self.timeout:g} s")
        if isinstance(exc, requests.exceptions.SSLError):
            # The engine refusing a client certificate is as often a bare EOF as an alert.
            return EngineError(
                f"TLS with {where} failed ({what}): {_reason(exc)}; check the engine's "
                "certificate against ca.pem, and that it accepts cert.pem (DOCKER_CERT_PATH)"
            )
        if isinstance(exc, requests.exceptions.ConnectionError | OSError):
            return EngineError(f"cannot reach {where} ({what}): {_reason(exc)}")
        if isinstance(exc, ValueError):  # requests' JSONDecodeError is one too
            return EngineError(f"{where} answered {what} with something that is not JSON")
        if isinstance(
            exc,
            docker.errors.DockerException
            | requests.exceptions.RequestException
            | urllib3.exceptions.HTTPError,
        ):
            return EngineError(f"{where} ({what}): {_reason(exc)}")
        return exc


def _reason(exc: BaseException) -> str:
    """The first cause that is not requests', urllib3's or the SDK's wrapping of it: "[Errno
    111] Connection refused" rather than a retry counter around a pool around it."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if type(current).__module__.split(".")[0] not in ("requests", "urllib3", "docker"):
            return str(current) or type(current).__name__
        inner = [getattr(current, "reason", None), *current.args]
        inner += [current.__cause__, current.__context__]
        pending += [e for e in inner if isinstance(e, BaseException)]
    return str(exc) or type(exc).__name__


# --- the current Docker context ---------------------------------------------------------------


def _context(environment: Mapping[str, str]) -> tuple[str, TLSConfig | bool] | None:
    """The endpoint of the current context other than "default", as the CLI stores it:
    ``contexts/meta/<sha256 of name>/meta.json`` and ``contexts/tls/<same>/docker/*.pem``
    beside config.json. (docker.context.ContextAPI would find config.json by os.environ's
    DOCKER_CONFIG, not the one the agent captured.)"""
    config_dir = Path(environment.get("DOCKER_CONFIG") or Path.home() / ".docker")
    name = environment.get("DOCKER_CONTEXT")
    if not name:
        name = _read_json(config_dir / "config.json", missing={}).get("currentContext")
    if not name or name == "default":
        return None
    directory = get_context_id(name)
    meta_path = config_dir / "contexts" / "meta" / directory / "meta.json"
    meta = _read_json(meta_path, missing=None)
    if meta is None:
        raise EngineError(f"the Docker context {name!r} does not exist (no {meta_path})")
    endpoint = (meta.get("Endpoints") or {}).get("docker") or {}
    host = endpoint.get("Host") or DEFAULT_HOST
    tls_dir = config_dir / "contexts" / "tls" / directory / "docker"
    if not tls_dir.is_dir():
        return host, False
    ca, cert, key = (tls_dir / f"{part}.pem" for part in ("ca", "cert", "key"))
    return host, TLSConfig(
        client_cert=(str(cert), str(key)) if cert.is_file() and key.is_file() else None,
        ca_cert=str(ca) if ca.is_file() else None,
        verify=not endpoint.get("SkipTLSVerify", False),
    )


def _read_json(path: Path, missing: dict | None) -> dict | None:
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return missing
    except (OSError, ValueError) as exc:
        raise EngineError(f"cannot read {path}: {exc}") from None
    if not isinstance(document, dict):
        raise EngineError(f"cannot read {path}: not a JSON object")
    return document


# --- the SDK's client -------------------------------------------------------------------------


class _Client(docker.APIClient):
    """``docker.APIClient`` over a transport of the agent's own (below), which closes what it
    opened when its first ``GET /version`` fails."""

    def __init__(self, adapter: "_Adapter | None" = None, **kwargs):
        self._adapter = adapter
        try:
            super().__init__(**kwargs)
        except BaseException:
            self.close()
            if adapter is not None:
                adapter.close()
            raise

    def _retrieve_server_version(self) -> str:
        # The SDK's hook between mounting its transports and asking the version.
        # requests would let REQUESTS_CA_BUNDLE replace the CA of DOCKER_CERT_PATH, and read
        # proxies and ~/.netrc: the docker CLI reads none of these for the engine.
        self.trust_env = False
        if self._adapter is not None:
            self.mount(self.base_url, self._adapter)
        return super()._retrieve_server_version()


def _client(address: str, tls: TLSConfig | bool, timeout: float, pool_size: int) -> _Client:
    options = {
        "version": "auto",
        "timeout": timeout,
        "max_pool_size": pool_size,
        "user_agent": "tassium-agent",
    }
    if address.startswith("unix://"):
        path = "/" + address.removeprefix("unix://").lstrip("/")
        adapter = _Adapter(functools.partial(_unix_socket, path), timeout, pool_size)
        return _Client(adapter, base_url="http://docker.localhost:2375", **options)
    if address.startswith("ssh://"):
        parts = urlsplit(address)
        if not parts.hostname:
            raise EngineError(f"{address} names no host")
        command = _ssh_command(parts, timeout)
        adapter = _Adapter(functools.partial(_ssh_socket, command), timeout, pool_size)
        return _Client(adapter, base_url=f"http://{parts.hostname}:{parts.port or 22}", **options)
    return _Client(base_url=address, tls=tls, **options)


# --- transports --------------------------------------------------------------------------------
# The SDK's own for unix:// leaves a socket open when the engine's is missing or refuses
# (until the garbage collector finds it); the SDK's ssh:// needs paramiko imported even to
# shell out to ssh (use_ssh_client=True), and reads the ssh process's pipes with no time-out
# at all. The agent's open a socket the same way and close it on failure; for ssh:// each
# connection is ``ssh HOST docker system dial-stdio``, as the docker CLI runs it, on one end
# of a socket pair, so that every read is bounded by the timeout like any socket's.

Opened = tuple[socket.socket, subprocess.Popen | None]


def _unix_socket(path: str, timeout: float) -> Opened:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock, None


def _ssh_command(parts: SplitResult, timeout: float) -> list[str]:
    # BatchMode: under systemd there is nobody to type a password, so fail rather than wait.
    command = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={math.ceil(timeout)}"]
    if parts.username:
        command += ["-l", parts.username]
    if parts.port:
        command += ["-p", str(parts.port)]
    return [*command, "--", parts.hostname, "docker", "system", "dial-stdio"]


def _ssh_socket(command: list[str], timeout: float) -> Opened:
    ours, theirs = socket.socketpair()
    try:
        process = subprocess.Popen(  # noqa: S603 - ssh, as the docker CLI runs it
            command, stdin=theirs, stdout=theirs, start_new_session=True
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    ours.settimeout(timeout)
    return ours, process


class _Connection(urllib3.connection.HTTPConnection):
    def __init__(self, opener, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.opener = opener
        self.seconds = timeout
        self.process: subprocess.Popen | None = None

    def connect(self) -> None:
        self.sock, self.process = self.opener(self.seconds)

    def close(self) -> None:
        super().close()
        process, self.process = self.process, None
        if process is not None:
            # Its end of the socket pair has seen ours close; ssh itself may linger.
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class _Pool(urllib3.connectionpool.HTTPConnectionPool):
    def __init__(self, opener, timeout: float, maxsize: int):
        super().__init__("localhost", timeout=timeout, maxsize=maxsize)
        self.opener = opener
        self.seconds = timeout

    def _new_conn(self) -> _Connection:
        return _Connection(self.opener, self.seconds)


class _Adapter(BaseHTTPAdapter):
    def __init__(self, opener, timeout: float, pool_size: int):
        self.pool = _Pool(opener, timeout, pool_size)
        super().__init__()

    def get_connection(self, url, proxies=None) -> _Pool:
        return self.pool

    def request_url(self, request, proxies) -> str:
        return request.path_url  # no proxy on a local socket or through ssh

    def close(self) -> None:
        super().close()
        self.pool.close()
