"""Collector configuration: read once from YAML and the environment, validated into one
frozen object that ``create_app`` and the commands receive. No other module reads the
environment."""

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from protocol.wallets import WALLET_FORMATS

DEFAULT_CONFIG_PATH = Path("/etc/tassium/collector.yaml")
ENV_PREFIX = "TASSIUM_"


class ConfigError(Exception):
    """Every problem found in the configuration, one per line, each naming where it came from."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid collector configuration:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class CollectorConfig:
    database_url: str = "sqlite:///tassium-collector.db"
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
    sweep_interval: int = 60
    max_body_bytes: int = 256 * 1024
    deployment_url_template: str = "https://{name}.tassium.app"
    migrate_on_start: bool = False
    log_level: str = "INFO"

    def __repr__(self) -> str:
        # The API token and a database password must not reach a log line.
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.api_token:
            shown["api_token"] = "********"  # noqa: S105 - a mask, not a secret
        shown["database_url"] = _mask_password(self.database_url)
        return "CollectorConfig(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgres://", "postgresql://"))


_RULES: dict[str, tuple[type, object]] = {
    # name: (type, check) where check is a predicate or a tuple of allowed values
    "database_url": (str, lambda v: v.startswith(("sqlite:///", "postgres://", "postgresql://"))),
    "host": (str, lambda v: bool(v)),
    "port": (int, lambda v: 0 < v < 65536),
    "processes": (int, lambda v: 1 <= v <= 64),
    "api_token": (str, lambda v: len(v) >= 16),
    "cors_origins": (
        tuple,
        lambda v: all(o == "*" or urlsplit(o).scheme in ("http", "https") for o in v),
    ),
    "wallet_format": (str, WALLET_FORMATS),
    "require_signatures": (bool, None),
    "enrollment_policy": (str, ("open", "token")),
    "enrollment_token_ttl": (int, lambda v: 60 <= v <= 30 * 24 * 3600),
    "gap": (int, lambda v: v >= 1),
    "max_backfill": (int, lambda v: v >= 0),
    "max_skew": (int, lambda v: v >= 0),
    "sweep_interval": (int, lambda v: v >= 0),
    "max_body_bytes": (int, lambda v: 1024 <= v <= 64 * 1024 * 1024),
    "deployment_url_template": (
        str,
        lambda v: "{name}" in v and urlsplit(v.replace("{name}", "x")).scheme in ("http", "https"),
    ),
    "migrate_on_start": (bool, None),
    "log_level": (str, ("DEBUG", "INFO", "WARNING", "ERROR")),
}

_HINTS = {
    "database_url": "a sqlite:///path or postgresql:// URL",
    "port": "a port from 1 to 65535",
    "processes": "from 1 to 64",
    "api_token": "at least 16 characters",
    "cors_origins": "http(s) origins or *",
    "enrollment_token_ttl": "seconds, from 60 to 30 days",
    "gap": "seconds, at least 1",
    "max_backfill": "seconds, 0 or more",
    "max_skew": "seconds, 0 or more",
    "sweep_interval": "seconds, 0 turns the sweeper off",
    "max_body_bytes": "from 1024 to 64 MiB",
    "deployment_url_template": "an http(s) URL containing {name}",
}


def load_config(
    path: Path | None = None, environ: Mapping[str, str] | None = None
) -> CollectorConfig:
    """Read the YAML file (the default path may be missing; an explicit one may not), apply
    ``TASSIUM_*`` and ``DATABASE_URL`` overrides, validate everything, report every problem."""
    environ = os.environ if environ is None else environ
    explicit = path is not None or "TASSIUM_CONFIG" in environ
    path = Path(path or environ.get("TASSIUM_CONFIG") or DEFAULT_CONFIG_PATH)
    raw: dict[str, tuple[object, str]] = {}
    problems: list[str] = []

    if path.exists():
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError([f"{path}: cannot be read: {exc}"]) from None
        if not isinstance(document, dict):
            raise ConfigError([f"{path}: must be a mapping of keys to values"])
        for key, value in document.items():
            raw[str(key)] = (value, f"{path}: {key}")
        if "api_token" in document and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            problems.append(f"{path}: holds api_token but is readable by others (chmod 600)")
    elif explicit:
        raise ConfigError([f"{path}: no such file"])

    for name in _RULES:
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            raw[name] = (_from_env(name, environ[env_name]), env_name)
    if "DATABASE_URL" in environ:
        raw["database_url"] = (environ["DATABASE_URL"], "DATABASE_URL")

    values = {}
    for key, (value, where) in raw.items():
        if key not in _RULES:
            problems.append(f"{where}: unknown setting")
            continue
        try:
            values[key] = _check(key, value)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    if problems:
        raise ConfigError(problems)
    return replace(CollectorConfig(), **values)


def _from_env(name: str, text: str) -> object:
    kind = _RULES[name][0]
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        return text
    if kind is int:
        try:
            return int(text)
        except ValueError:
            return text
    if kind is tuple:
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def _check(name: str, value: object) -> object:
    kind, rule = _RULES[name]
    if kind is tuple and isinstance(value, list):
        value = tuple(value)
    if kind is tuple and not all(isinstance(v, str) for v in value or ()):
        raise ValueError("must be a list of strings")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"must be {_kind_name(kind)}, not {value!r}")
    if isinstance(rule, tuple) and value not in rule:
        raise ValueError(f"must be one of {', '.join(rule)}, not {value!r}")
    if callable(rule) and not rule(value):
        shown = "********" if name == "api_token" else value
        raise ValueError(f"must be {_HINTS.get(name, 'valid')}, not {shown!r}")
    return value


def _kind_name(kind: type) -> str:
    return {bool: "true or false", int: "a whole number", str: "text", tuple: "a list"}[kind]


def _mask_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":********@", 1)
    return url
