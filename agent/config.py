"""Agent configuration: ``/etc/tassium/agent.yaml`` with ``TASSIUM_*`` overrides, validated
once into a frozen ``AgentConfig``."""

import os
import pwd
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from agent.errors import ConfigError
from protocol import ProtocolError
from protocol.settings import Rule, SettingsError, read_settings
from protocol.wallets import WALLET_FORMATS, normalize_wallet

DEFAULT_CONFIG_PATH = Path("/etc/tassium/agent.yaml")
# Where the docker CLI finds the engine, and so the agent when docker_host is not set.
DOCKER_VARIABLES = (
    "DOCKER_HOST",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
)
DEFAULT_STATE_DIR = Path("/var/lib/tassium-agent")
ENV_PREFIX = "TASSIUM_"
CONFIG_VARIABLE = "TASSIUM_CONFIG"
# The collector's settings, whose variables share the prefix: a machine may run both, and the
# agent must not call them mistakes. Written here because the agent never imports the collector
# (a worker installs none of its libraries); tests/agent/test_config.py keeps the two equal.
COLLECTOR_SETTINGS = frozenset(
    {"access_log", "agent_package", "api_token", "body_timeout", "capacity_growth",
     "capacity_max_containers", "capacity_max_cpu_cores", "capacity_max_ram_gb",
     "capacity_max_storage_gb", "connections_per_process", "cors_origins", "dashboard_refresh",
     "database_url", "deployer_build_timeout", "deployer_repositories", "deployer_secret",
     "deployer_timeout", "deployer_url", "deployment_url_template", "enrollment_policy",
     "enrollment_token_ttl", "gap", "group_commit_wait_ms", "header_timeout", "host",
     "insecure_anonymous_deployments", "insecure_http_installs", "insecure_open_network",
     "key_cache_entries", "liveness_interval", "log_level", "max_backfill", "max_body_bytes",
     "max_skew", "metrics_per_worker", "metrics_retention_days", "migrate_on_start", "min_interval",
     "ping_interval", "port", "private_pages", "processes", "public_url", "rate_limit_enrollment",
     "rate_limit_writes", "receipt_key", "receipt_key_file", "receipts", "require_signatures",
     "session_ttl", "sweep_interval", "wallet_format"}
)  # fmt: skip


def _http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


RULES = {
    "collector_url": Rule(str, _http_url, "an http(s) URL"),
    "wallet": Rule(str),
    "wallet_format": Rule(str, WALLET_FORMATS),
    "interval": Rule(int, lambda v: 1 <= v <= 24 * 3600, "seconds, from 1 to 86400"),
    "jitter": Rule(float, lambda v: 0 <= v <= 0.5, "a fraction of the interval, 0 to 0.5"),
    "state_dir": Rule(str, os.path.isabs, "an absolute path"),
    "key_path": Rule(str, os.path.isabs, "an absolute path"),
    "spool_path": Rule(str, os.path.isabs, "an absolute path"),
    "spool_max": Rule(int, lambda v: 1 <= v <= 1_000_000, "from 1 to 1000000"),
    "docker_host": Rule(
        str,
        lambda v: v.startswith(("unix://", "tcp://", "http://", "https://", "ssh://")),
        "a unix://, tcp://, http(s):// or ssh:// address",
    ),
    "docker_timeout": Rule(float, lambda v: 0 < v <= 300, "seconds, above 0"),
    "connect_timeout": Rule(float, lambda v: 0 < v <= 300, "seconds, above 0"),
    "read_timeout": Rule(float, lambda v: 0 < v <= 300, "seconds, above 0"),
    "send_timeout": Rule(float, lambda v: 0 < v <= 600, "seconds, above 0"),
    "batch_size": Rule(int, lambda v: 1 <= v <= 500, "heartbeats per request, from 1 to 500"),
    "ping_interval": Rule(int, lambda v: 0 <= v <= 3600, "seconds, from 1 to 3600; 0: no pings"),
    "retry_base": Rule(float, lambda v: 0 < v <= 3600, "seconds, above 0"),
    "retry_max": Rule(float, lambda v: 0 < v <= 24 * 3600, "seconds, above 0"),
    "log_level": Rule(str, ("DEBUG", "INFO", "WARNING", "ERROR")),
    "ca_bundle": Rule(str, os.path.isabs, "an absolute path"),
}


@dataclass(frozen=True)
class Proxies:
    """The proxy variables as curl, urllib and httpx read them (lower case first), captured
    once; agent/sender.py picks the one for the collector and applies no_proxy."""

    http: str | None = None
    https: str | None = None
    all: str | None = None
    no: str | None = None

    def __repr__(self) -> str:
        # A proxy URL may hold the owner's proxy password: never printed or logged.
        shown = {
            name: _without_password(value)
            for name in ("http", "https", "all", "no")
            if (value := getattr(self, name))
        }
        return f"Proxies({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def _without_password(url: str) -> str:
    userinfo, at, host = url.rpartition("@")
    if not at or ":" not in userinfo.rpartition("//")[2]:
        return url
    return f"{userinfo.rpartition(':')[0]}:***@{host}"


def _proxies(environ: Mapping[str, str], problems: list[str]) -> Proxies:
    found = {}
    for scheme in ("http", "https", "all", "no"):
        name = f"{scheme}_proxy"
        # Empty counts as unset, as curl reads it.
        value = environ.get(name) or environ.get(name.upper()) or None
        proxy_scheme = urlsplit(value).scheme if value and "://" in value else "http"
        if scheme != "no" and proxy_scheme not in ("http", "https"):
            problems.append(
                f"{name.upper()}: must be an http:// or https:// proxy, not "
                f"{_without_password(value)!r} (the agent speaks no SOCKS)"
            )
            value = None
        found[scheme] = value
    return Proxies(**found)


def _check_ca_bundle(path: str) -> str | None:
    """Why ``path`` cannot be the CA bundle, or None."""
    try:
        with open(path, "rb") as file:
            text = file.read(4 * 1024 * 1024)
    except FileNotFoundError:
        return f"{path} does not exist: name the PEM file holding the collector's CA"
    except IsADirectoryError:
        return f"{path} is a directory: name one PEM file (certificates may be concatenated)"
    except OSError as exc:
        return f"{path} cannot be read: {exc.strerror}"
    if b"-----BEGIN CERTIFICATE-----" not in text:
        return f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    return None


@dataclass(frozen=True)
class AgentConfig:
    collector_url: str
    wallet: str
    wallet_format: str = "evm"
    interval: int = 300
    jitter: float = 0.1
    state_dir: Path = DEFAULT_STATE_DIR
    key_path: Path = field(default=DEFAULT_STATE_DIR / "agent.key")
    spool_path: Path = field(default=DEFAULT_STATE_DIR / "spool")
    spool_max: int = 2000
    # None: where the docker CLI would find the engine, from docker_environment.
    docker_host: str | None = None
    docker_timeout: float = 10.0
    # The DOCKER_VARIABLES as load_config found them (name, value), for the Docker SDK.
    docker_environment: tuple[tuple[str, str], ...] = ()
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    # The whole of one request, answer included: read_timeout bounds only each read.
    send_timeout: float = 30.0
    # Heartbeats per request when replaying a backlog; 1 sends each on its own.
    batch_size: int = 100
    # A light signed "still here" between heartbeats, for the worker's live status.
    ping_interval: int = 30
    retry_base: float = 10.0
    retry_max: float = 600.0
    log_level: str = "INFO"
    # The CAs trusted for the collector (and an https:// proxy) instead of the system's.
    ca_bundle: Path | None = None
    proxies: Proxies = Proxies()
    # Not a setting: a sentence for each TASSIUM_ variable that named none, which the CLI logs.
    warnings: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def status_path(self) -> Path:
        return self.state_dir / "status.json"

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"AgentConfig({shown})"


def check_state_dir(config: AgentConfig, *, create: bool = False, write: bool = True) -> None:
    """One sentence for a state directory the agent cannot use, naming it and what to do,
    instead of a traceback from wherever it is first touched. ``create`` makes a missing one
    (keygen); otherwise nothing is created, since ``status`` changes nothing on disk.
    ``write=False`` for a command that only reads it (enroll)."""
    path = config.state_dir
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError as exc:  # a parent we may not search, a symlink loop
        raise ConfigError(f"state_dir {path} cannot be reached: {exc.strerror}") from None
    if mode is None:
        if path.is_symlink():
            raise ConfigError(
                f"state_dir {path} is a symbolic link to {os.readlink(path)}, which does not "
                "exist: create that directory or point state_dir at another"
            )
        blocker = _creation_blocker(path)
        if blocker:
            raise ConfigError(f"state_dir {path} cannot be created: {blocker}")
        if not create:
            raise ConfigError(
                f"state_dir {path} does not exist: run tassium-agent keygen, which creates it"
            )
        try:
            path.mkdir(parents=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(f"state_dir {path} cannot be created: {exc.strerror}") from None
        return
    if not stat.S_ISDIR(mode):
        raise ConfigError(
            f"state_dir {path} is a file, not a directory: point state_dir at a directory"
        )
    problem = _unusable(path, write)
    if problem:
        raise ConfigError(f"state_dir {path} {problem}")


def _creation_blocker(path: Path) -> str | None:
    """Why ``mkdir -p path`` would fail, found without creating anything."""
    for parent in path.parents:
        try:
            mode = parent.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue  # the nearest parent that exists decides
        except OSError as exc:
            return f"{parent} cannot be reached: {exc.strerror}"
        if not stat.S_ISDIR(mode):
            return f"{parent} is a file, not a directory: point state_dir elsewhere"
        if os.access(parent, os.W_OK | os.X_OK):
            return None
        if os.statvfs(parent).f_flag & os.ST_RDONLY:
            return f"{parent} {_READ_ONLY}"
        me = _user(os.geteuid())
        return (
            f"{me} may not write to {parent}: create {path} for {me} "
            f"(as root: install -d -o {me} -m 700 {path}), or point state_dir elsewhere"
        )
    return None


# Under systemd also what ProtectSystem=strict makes of any path the unit may not write.
_READ_ONLY = (
    "is on a read-only file system: point state_dir at a writable directory "
    "(under systemd, the unit's StateDirectory /var/lib/tassium-agent)"
)


def _unusable(directory: Path, write: bool) -> str | None:
    """What stops this user using an existing ``directory`` (and what to do), or None."""
    if os.access(directory, os.R_OK | os.X_OK | (os.W_OK if write else 0)):
        return None
    if write and os.statvfs(directory).f_flag & os.ST_RDONLY:
        return _READ_ONLY
    owner, me = _user(directory.stat().st_uid), _user(os.geteuid())
    if owner != me:
        return (
            f"belongs to {owner}, and {me} may not {'write to' if write else 'read'} it: "
            f"run tassium-agent as {owner} (sudo -u {owner} tassium-agent ...)"
        )
    return f"is not {'writable' if write else 'readable'} by its owner {me}: chmod 700 {directory}"


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a name, as in a container
        return f"uid {uid}"


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> AgentConfig:
    environ = os.environ if environ is None else environ
    explicit = path is not None or CONFIG_VARIABLE in environ
    path = Path(path or environ.get(CONFIG_VARIABLE) or DEFAULT_CONFIG_PATH)
    try:
        values = read_settings(
            "agent",
            RULES,
            path,
            explicit=explicit,
            environ=environ,
            env_prefix=ENV_PREFIX,
            own_variables=(CONFIG_VARIABLE,),
            other_variables={ENV_PREFIX + name.upper() for name in COLLECTOR_SETTINGS},
        )
        problems, given, warnings = [], frozenset(values), values.warnings
    except SettingsError as exc:
        if exc.values is None:  # the file itself is wrong: nothing else can be checked
            raise ConfigError(str(exc)) from None
        # Keep going, so that a bad value and a missing or bad wallet are reported together.
        values, problems, given = exc.values, list(exc.problems), exc.given
        warnings = exc.warnings
    rejected = given - values.keys()

    for required in ("collector_url", "wallet"):
        if required not in given:
            problems.append(f"{required}: missing (set it in {path} or TASSIUM_{required.upper()})")
    if "wallet" in values and "wallet_format" not in rejected:
        try:
            values["wallet"] = normalize_wallet(
                values["wallet"], values.get("wallet_format", "evm")
            )
        except ProtocolError as exc:
            problems.append(f"wallet: {exc}")
    base, cap = values.get("retry_base", 10.0), values.get("retry_max", 600.0)
    if base > cap and rejected.isdisjoint({"retry_base", "retry_max"}):
        problems.append("retry_base: must not exceed retry_max")
    if "ca_bundle" in values and (problem := _check_ca_bundle(values["ca_bundle"])):
        problems.append(f"ca_bundle: {problem}")
    proxies = _proxies(environ, problems)
    if problems:
        # The warnings too: a setting given under a mistyped name is often why one is missing.
        lines = [*problems, *warnings]
        raise ConfigError("invalid agent configuration:\n  " + "\n  ".join(lines))

    state_dir = Path(values.pop("state_dir", DEFAULT_STATE_DIR))
    values.setdefault("key_path", state_dir / "agent.key")
    values.setdefault("spool_path", state_dir / "spool")
    values["key_path"] = Path(values["key_path"])
    values["spool_path"] = Path(values["spool_path"])
    values["collector_url"] = values["collector_url"].rstrip("/")
    values["docker_environment"] = tuple(
        (name, environ[name]) for name in DOCKER_VARIABLES if name in environ
    )
    if "ca_bundle" in values:
        values["ca_bundle"] = Path(values["ca_bundle"])
    return AgentConfig(state_dir=state_dir, proxies=proxies, warnings=warnings, **values)
