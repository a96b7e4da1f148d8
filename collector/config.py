"""Collector configuration: read once from YAML and the environment, validated into one
frozen object that ``create_app`` and the commands receive. No other module reads the
environment."""

import base64
import binascii
import os
import pwd
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import yaml
from limits import RateLimitItem, parse_many

from agent.config import RULES as AGENT_RULES
from protocol import patterns, private_files
from protocol.heartbeat import MAX_CONTAINERS, MAX_CPU_CORES, MAX_GB
from protocol.settings import Rule, SettingsError, read_settings
from protocol.wallets import WALLET_FORMATS

DEFAULT_CONFIG_PATH = Path("/etc/tassium/collector.yaml")
# Where the receipt key is kept when receipt_key_file does not say (see receipt_key_path).
RECEIPT_KEY_NAME = "tassium-receipt-signing.key"
# The collector's state (the SQLite database, the receipt key) when run as root; systemd's
# StateDirectory= names it for the unit, and other users keep theirs in their home (see
# state_directory). The database keeps the name it had when it was relative to the unit's
# WorkingDirectory, so that an installed collector finds its database after an upgrade.
STATE_DIRECTORY = Path("/var/lib/tassium-collector")
DATABASE_FILE = "tassium-collector.db"
# How long an enrollment token may stay valid, in seconds: a minute to 30 days.
TOKEN_TTL_MIN, TOKEN_TTL_MAX = 60, 30 * 24 * 3600
ENV_PREFIX = "TASSIUM_"


class ConfigError(Exception):
    """Every problem found in the configuration, one per line, each naming where it came from."""

    def __init__(self, problems: list[str], warnings: tuple[str, ...] = ()):
        self.problems = problems
        # Not problems, but often the reason for one (a setting given under a mistyped name).
        self.warnings = warnings
        super().__init__(
            "invalid collector configuration:\n  " + "\n  ".join([*problems, *warnings])
        )


def sqlite_url(path: Path) -> str:
    """The ``sqlite:///`` URL of a file (quoted as ``collector.store.db`` reads it)."""
    return "sqlite:///" + quote(str(path))


@dataclass(frozen=True)
class CollectorConfig:
    # Absolute, so that every command finds the same database wherever it is run; load_config
    # puts it in the state_directory of whoever runs it.
    database_url: str = sqlite_url(STATE_DIRECTORY / DATABASE_FILE)
    host: str = "127.0.0.1"
    port: int = 8000
    processes: int = 2
    api_token: str | None = None
    cors_origins: tuple[str, ...] = ()
    wallet_format: str = "evm"
    require_signatures: bool = True
    enrollment_policy: str = "open"
    enrollment_token_ttl: int = 24 * 3600
    gap: int = 30 * 60
    max_backfill: int = 24 * 3600
    max_skew: int = 120
    # One heartbeat per this many seconds is stored for a wallet; those between are 429.
    min_interval: int = 10
    sweep_interval: int = 60
    max_body_bytes: int = 256 * 1024
    # Untrusted clients: a request's headers must arrive within header_timeout seconds (also
    # how long an idle keep-alive connection is kept), its body within body_timeout; each
    # serving process holds at most connections_per_process connections at once.
    header_timeout: int = 10
    body_timeout: int = 30
    connections_per_process: int = 1000
    deployment_url_template: str = "https://{name}.tassium.app"
    migrate_on_start: bool = False
    log_level: str = "INFO"
    # What workers reach the collector at, written into their install script; without it the
    # address the owner fetched the script from is used.
    public_url: str | None = None
    # A pip requirement the install script installs instead of the collector's own wheel.
    agent_package: str | None = None
    # How often agents ping: a worker is HEALTHY within 2 intervals of its last ping, WARNING
    # within 3, DEAD after.
    ping_interval: int = 30
    # How long the metrics points behind the worker client's chart are kept.
    metrics_retention_days: int = 30
    # The original Tassium deployer service: without one, deployments move through their
    # statuses by PATCH /deployments/<name>/status alone.
    deployer_url: str | None = None
    # Seconds a build may take (the deployer answers a deploy when it is done), and seconds
    # for its quick calls (env vars, removal), which an HTTP request waits for.
    deployer_build_timeout: int = 900
    deployer_timeout: int = 30
    # The secret every call to the deployer is signed with (HMAC, collector/projects/deployer.py); a
    # deployer_url needs one.
    deployer_secret: str | None = None
    # The repositories the deployer may be asked to build: "host" (every repository there),
    # "host/owner" or "host/owner/repo". None allowed until the operator names some.
    deployer_repositories: tuple[str, ...] = ()
    # Whether the dashboard (/) and /metrics need the API token, like the mutating routes.
    private_pages: bool = False
    # How often each serving process records that it is alive: the collector's own outages
    # (spans no process covered) are told apart from workers' downtime in the reports.
    liveness_interval: int = 10
    # Seconds between the dashboard's refreshes of its live part.
    dashboard_refresh: int = 10
    # Milliseconds a heartbeat waits for the others this process is serving to share its
    # transaction (collector/uptime/commits.py); 0: each is committed as soon as it is ready.
    group_commit_wait_ms: int = 2
    # Public keys each serving process keeps (collector/uptime/keys.py), about 150 bytes each: a
    # heartbeat whose worker's key is not among them reads it from the table first.
    key_cache_entries: int = 100_000
    # A line per request on standard output. A million workers send 3,333 heartbeats a
    # second: a tenth of the collector's CPU goes to that log, which such a fleet may turn off.
    access_log: bool = True
    # The capacity a worker is credited for (collector/uptime/capacity.py): at most these, however
    # large a machine it declares; growing by itself by at most capacity_growth (a fraction)
    # of the capacity fixed at enrollment, the rest awaiting the operator's approval; and at
    # most capacity_max_containers containers counted.
    capacity_max_cpu_cores: int = 128
    capacity_max_ram_gb: float = 1024.0
    capacity_max_storage_gb: float = 20000.0
    capacity_growth: float = 0.0
    capacity_max_containers: int = 100
    # Requests per client address to the write routes (collector/web/ratelimits.py), in the
    # notation of the limits library ("10/minute", several joined by ";"); "0" or "" is off.
    # An enrollment is two requests (the challenge and its signature).
    rate_limit_enrollment: str = "30/minute"
    rate_limit_writes: str = "120/minute"
    # How long a wallet's sign-in (collector/identity/sign_in.py) lasts, in seconds.
    session_ttl: int = 3600
    # The Ed25519 key the collector signs receipts with (collector/identity/collector_key.py):
    # a file, made on first start when missing, or the key itself (receipt_key, the base64 of
    # its 32-byte seed). Every node of one collector shares it.
    receipt_key_file: str | None = None
    receipt_key: str | None = None
    # Off only to measure what receipts cost (bench/ingest.py): heartbeats are then answered
    # without one, and a payout's receipt roots are those of no receipts.
    receipts: bool = True
    # Workers with a series of their own on /metrics (tassium_worker_state, _paid), at most;
    # 0: none, only the fleet's counts (collector/uptime/fleet_gauges.py).
    metrics_per_worker: int = 0
    # Loudly named escapes from the safe defaults, each for an operator who knows why:
    # serve beyond loopback without an api_token (a network where everyone is trusted);
    # let the unchanged original app create, delete and scale deployments anonymously through
    # /api/v1 (anyone can then do so for any wallet; never payments, payouts or enrollment);
    # serve install scripts whose collector URL is plain http beyond loopback.
    insecure_open_network: bool = False
    insecure_anonymous_deployments: bool = False
    insecure_http_installs: bool = False
    # Not settings. Where the collector keeps its state unless told (state_directory()); and a
    # sentence for each TASSIUM_ variable that named no setting, which the commands log.
    state_directory: Path = STATE_DIRECTORY
    warnings: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def sqlite_file(self) -> Path | None:
        """The SQLite database's file, absolute (None with PostgreSQL)."""
        if not self.database_url.startswith("sqlite:///"):
            return None
        return Path(unquote(self.database_url.removeprefix("sqlite:///"))).absolute()

    @property
    def database_location(self) -> str:
        """The database as every message about it names it: the SQLite file, or the
        PostgreSQL URL with its password masked."""
        return str(self.sqlite_file or mask_password(self.database_url))

    @property
    def receipt_key_path(self) -> Path:
        """``receipt_key_file``; else beside the SQLite database, so that the embedded default
        runs wherever its database can be written; else (PostgreSQL) the state directory."""
        if self.receipt_key_file:
            return Path(self.receipt_key_file)
        if self.sqlite_file is not None:
            return self.sqlite_file.parent / RECEIPT_KEY_NAME
        return self.state_directory / RECEIPT_KEY_NAME

    def __repr__(self) -> str:
        # The secrets (the API token, the receipt key…) and a database password must not
        # reach a log line.
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        for secret in SECRETS:
            if getattr(self, secret):
                shown[secret] = "********"
        shown["database_url"] = mask_password(self.database_url)
        return "CollectorConfig(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @property
    def build_timeout(self) -> timedelta | None:
        """How long a build may take, when a deployer runs builds (else none to watch)."""
        return timedelta(seconds=self.deployer_build_timeout) if self.deployer_url else None

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgres://", "postgresql://"))


def _origins(values: tuple) -> bool:
    return all(o == "*" or urlsplit(o).scheme in ("http", "https") for o in values)


# Both end up in the install script, which checks them again with the same patterns: a value
# the collector accepts here is one the script it serves accepts too.
_PUBLIC_URL = re.compile(patterns.COLLECTOR_URL)
_REQUIREMENT = re.compile(patterns.PIP_REQUIREMENT)
_DEPLOYER_URL = re.compile(patterns.COLLECTOR_URL)
_REPOSITORY = re.compile(patterns.REPOSITORY_SCOPE)


def _seed(value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def _url_template(value: str) -> bool:
    return "{name}" in value and urlsplit(value.replace("{name}", "x")).scheme in ("http", "https")


# The longest window a rate limit may count over.
RATE_LIMIT_WINDOW_MAX = 366 * 24 * 3600


def rate_limit_items(text: str) -> list[RateLimitItem]:
    """The limits a rate-limit setting names (none when it is "0" or empty); ValueError when
    it names none that can be counted."""
    if text.strip() in ("", "0"):
        return []
    items = parse_many(text)  # ValueError when it is not the notation
    if not all(i.amount >= 1 and 1 <= i.get_expiry() <= RATE_LIMIT_WINDOW_MAX for i in items):
        raise ValueError(f"{text!r} allows no request, or counts over more than a year")
    return items


def _rate_limit(text: str) -> bool:
    try:
        rate_limit_items(text)
    except ValueError:
        return False
    return True


_RATE_LIMIT = (
    'requests per window, as in "10/minute" or "100 per 2 hours" (several joined by ";"; '
    'a window of a second to a year), or "0" to turn it off'
)

RULES = {
    "database_url": Rule(
        str,
        lambda v: v.startswith(("sqlite:///", "postgres://", "postgresql://")),
        "a sqlite:///path or postgresql:// URL",
        secret=True,  # a rejected URL may still carry the database password
    ),
    "host": Rule(str, bool, "a host name or address"),
    "port": Rule(int, lambda v: 0 < v < 65536, "a port from 1 to 65535"),
    "processes": Rule(int, lambda v: 1 <= v <= 64, "from 1 to 64"),
    "api_token": Rule(str, lambda v: len(v) >= 16, "at least 16 characters", secret=True),
    "cors_origins": Rule(tuple, _origins, "http(s) origins or *"),
    "wallet_format": Rule(str, WALLET_FORMATS),
    "require_signatures": Rule(bool),
    "enrollment_policy": Rule(str, ("open", "token")),
    "enrollment_token_ttl": Rule(
        int, lambda v: TOKEN_TTL_MIN <= v <= TOKEN_TTL_MAX, "seconds, from 60 to 30 days"
    ),
    "gap": Rule(int, lambda v: v >= 1, "seconds, at least 1"),
    "max_backfill": Rule(int, lambda v: v >= 0, "seconds, 0 or more"),
    "max_skew": Rule(int, lambda v: v >= 0, "seconds, 0 or more"),
    "min_interval": Rule(int, lambda v: 0 <= v <= 3600, "seconds, from 0 to 3600"),
    "sweep_interval": Rule(int, lambda v: v >= 0, "seconds, 0 turns the sweeper off"),
    "max_body_bytes": Rule(int, lambda v: 1024 <= v <= 64 * 1024 * 1024, "from 1024 to 64 MiB"),
    "header_timeout": Rule(int, lambda v: 1 <= v <= 300, "seconds, from 1 to 300"),
    "body_timeout": Rule(int, lambda v: 1 <= v <= 3600, "seconds, from 1 to 3600"),
    "connections_per_process": Rule(int, lambda v: 10 <= v <= 100_000, "from 10 to 100000"),
    "deployment_url_template": Rule(str, _url_template, "an http(s) URL containing {name}"),
    "migrate_on_start": Rule(bool),
    "log_level": Rule(str, ("DEBUG", "INFO", "WARNING", "ERROR")),
    "public_url": Rule(
        str,
        lambda v: _PUBLIC_URL.fullmatch(v) is not None,
        "an http(s)://host[:port][/path] URL (host: a DNS name, IPv4 address or [IPv6] address;"
        " port: 1 to 65535; path: letters, digits and ._~/- only)",
    ),
    "agent_package": Rule(
        str, lambda v: _REQUIREMENT.fullmatch(v) is not None, "a pip requirement or URL"
    ),
    "ping_interval": Rule(int, lambda v: 5 <= v <= 3600, "seconds, from 5 to 3600"),
    "metrics_retention_days": Rule(int, lambda v: 1 <= v <= 3660, "days, from 1 to 3660"),
    "deployer_url": Rule(
        str,
        lambda v: _DEPLOYER_URL.fullmatch(v) is not None,
        "an http(s)://host[:port][/path] URL",
    ),
    "deployer_secret": Rule(str, lambda v: len(v) >= 32, "at least 32 characters", secret=True),
    "deployer_repositories": Rule(
        tuple,
        lambda v: all(_REPOSITORY.fullmatch(r) for r in v),
        "host, host/owner or host/owner/repo entries",
    ),
    "deployer_build_timeout": Rule(int, lambda v: 1 <= v <= 24 * 3600, "seconds, 1 to a day"),
    "deployer_timeout": Rule(int, lambda v: 1 <= v <= 600, "seconds, from 1 to 600"),
    "private_pages": Rule(bool),
    "liveness_interval": Rule(int, lambda v: 1 <= v <= 300, "seconds, from 1 to 300"),
    "dashboard_refresh": Rule(int, lambda v: 1 <= v <= 3600, "seconds, from 1 to 3600"),
    "group_commit_wait_ms": Rule(int, lambda v: 0 <= v <= 100, "milliseconds, from 0 to 100"),
    "access_log": Rule(bool),
    "key_cache_entries": Rule(int, lambda v: 0 <= v <= 10_000_000, "from 0 to 10000000"),
    "capacity_max_cpu_cores": Rule(
        int, lambda v: 1 <= v <= MAX_CPU_CORES, f"cores, from 1 to {MAX_CPU_CORES}"
    ),
    "capacity_max_ram_gb": Rule(float, lambda v: 1 <= v <= MAX_GB, f"GB, from 1 to {MAX_GB:g}"),
    "capacity_max_storage_gb": Rule(float, lambda v: 1 <= v <= MAX_GB, f"GB, from 1 to {MAX_GB:g}"),
    "capacity_growth": Rule(float, lambda v: 0 <= v <= 10, "a fraction, from 0 to 10"),
    "capacity_max_containers": Rule(
        int, lambda v: 0 <= v <= MAX_CONTAINERS, f"from 0 to {MAX_CONTAINERS}"
    ),
    "rate_limit_enrollment": Rule(str, _rate_limit, _RATE_LIMIT),
    "rate_limit_writes": Rule(str, _rate_limit, _RATE_LIMIT),
    "session_ttl": Rule(int, lambda v: 60 <= v <= 24 * 3600, "seconds, from 60 to a day"),
    "receipt_key_file": Rule(str, lambda v: Path(v).is_absolute(), "an absolute path"),
    "receipt_key": Rule(
        str, _seed, "the base64 of 32 random bytes (openssl rand -base64 32)", secret=True
    ),
    "receipts": Rule(bool),
    "metrics_per_worker": Rule(int, lambda v: 0 <= v <= 100_000, "from 0 to 100000"),
    "insecure_open_network": Rule(bool),
    "insecure_anonymous_deployments": Rule(bool),
    "insecure_http_installs": Rule(bool),
}

# The settings never shown: the database URL is shown with its password masked instead.
SECRETS = tuple(name for name, rule in RULES.items() if rule.secret and name != "database_url")

# The variables the collector reads besides its settings' (TASSIUM_ and the name in capitals).
CONFIG_VARIABLE = "TASSIUM_CONFIG"
ALIASES = {"DATABASE_URL": "database_url"}
# The agent's, which share the prefix: a machine may run both, and the collector must not call
# them mistakes.
AGENT_VARIABLES = frozenset(ENV_PREFIX + name.upper() for name in AGENT_RULES)


def variable(name: str) -> str:
    """The environment variable that overrides the setting ``name``."""
    return ENV_PREFIX + name.upper()


def state_directory(environ: Mapping[str, str], euid: int) -> Path:
    """Where the collector keeps its state when the settings do not say: the directory
    systemd made for the unit (StateDirectory=, in $STATE_DIRECTORY), /var/lib for root, and
    otherwise the user's own state directory (XDG), so that a developer's commands find one
    database from whichever directory they are run."""
    given = environ.get("STATE_DIRECTORY", "").split(":")[0]
    if given and Path(given).is_absolute():
        return Path(given)
    if euid == 0:
        return STATE_DIRECTORY
    xdg = environ.get("XDG_STATE_HOME", "")
    if Path(xdg).is_absolute():  # the XDG specification ignores a relative one
        return Path(xdg) / "tassium-collector"
    home = environ.get("HOME", "")
    if not Path(home).is_absolute():
        try:
            home = pwd.getpwuid(euid).pw_dir
        except KeyError:  # a uid without a name, as in a container: no home to write to
            return STATE_DIRECTORY
    return Path(home) / ".local" / "state" / "tassium-collector"


def load_config(
    path: Path | None = None, environ: Mapping[str, str] | None = None
) -> CollectorConfig:
    """Read the YAML file (the default path may be missing; an explicit one may not), apply
    ``TASSIUM_*`` and ``DATABASE_URL`` overrides, validate everything, report every problem."""
    environ = os.environ if environ is None else environ
    explicit = path is not None or CONFIG_VARIABLE in environ
    path = Path(path or environ.get(CONFIG_VARIABLE) or DEFAULT_CONFIG_PATH)
    problems = []
    try:
        values = read_settings(
            "collector",
            RULES,
            path,
            explicit=explicit,
            environ=environ,
            env_prefix=ENV_PREFIX,
            aliases=ALIASES,
            own_variables=(CONFIG_VARIABLE,),
            other_variables=AGENT_VARIABLES,
        )
        warnings = values.warnings
    except SettingsError as exc:
        problems, values, warnings = exc.problems, {}, exc.warnings
    if path.exists() and _file_has_secret(path) and private_files.too_open(path.stat().st_mode):
        problems.append(f"{path}: holds a secret but is readable by others (chmod 600)")
    if values.get("private_pages") and not values.get("api_token"):
        problems.append("private_pages: needs an api_token, the password of the private pages")
    if values.get("deployer_url") and not values.get("deployer_secret"):
        problems.append(
            "deployer_url: needs a deployer_secret (32 characters or more, shared with the"
            " deployer), which signs every call to it"
        )
    if "receipt_key" in values and "receipt_key_file" in values:
        problems.append(
            "receipt_key: the key is given twice: keep either receipt_key or receipt_key_file"
        )
    if problems:
        raise ConfigError(problems, warnings)
    state = state_directory(environ, os.geteuid())
    values.setdefault("database_url", sqlite_url(state / DATABASE_FILE))
    return replace(CollectorConfig(), state_directory=state, warnings=warnings, **values)


def _file_has_secret(path: Path) -> bool:
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(document, dict) and bool(set(SECRETS) & set(document))


def mask_password(url: str) -> str:
    """The URL with its password, if any, replaced by asterisks: safe for a log line."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":********@", 1)
    return url
