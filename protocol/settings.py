"""Reading a YAML settings file with environment overrides, the same way for the agent and
the collector: every key has a type and a rule, every problem is reported at once with the
file and key (or variable) it came from, as borgmatic's config validation does."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml


class SettingsError(Exception):
    def __init__(
        self,
        what: str,
        problems: list[str],
        values: dict[str, object] | None = None,
        given: frozenset[str] = frozenset(),
    ):
        self.problems = problems
        # When only some settings were wrong: those that passed, and every key given, so a
        # caller can add its own checks and still report every problem at once.
        self.values = values
        self.given = given
        super().__init__(f"invalid {what} configuration:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class Rule:
    kind: type  # bool, int, float, str or tuple (a list of strings)
    check: Callable[[object], bool] | tuple | None = None
    hint: str = "valid"
    secret: bool = False


_KIND_NAMES = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    str: "text",
    tuple: "a list",
}


def read_settings(
    what: str,
    rules: Mapping[str, Rule],
    path: Path,
    *,
    explicit: bool,
    environ: Mapping[str, str],
    env_prefix: str,
    aliases: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """Values from the file at ``path`` (which may be missing unless ``explicit``), then from
    ``env_prefix + KEY`` variables and ``aliases`` (variable name -> key), all checked."""
    raw: dict[str, tuple[object, str]] = {}
    if path.exists():
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(what, [f"{path}: cannot be read: {exc}"]) from None
        if not isinstance(document, dict):
            raise SettingsError(what, [f"{path}: must be a mapping of keys to values"])
        for key, value in document.items():
            raw[str(key)] = (value, f"{path}: {key}")
    elif explicit:
        raise SettingsError(what, [f"{path}: no such file"])

    for name, rule in rules.items():
        variable = env_prefix + name.upper()
        if variable in environ:
            raw[name] = (_from_env(rule.kind, environ[variable]), variable)
    for variable, name in (aliases or {}).items():
        if variable in environ:
            raw[name] = (_from_env(rules[name].kind, environ[variable]), variable)

    values, problems = {}, []
    for key, (value, where) in raw.items():
        if key not in rules:
            problems.append(f"{where}: unknown setting")
            continue
        try:
            values[key] = _check(rules[key], value)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    if problems:
        raise SettingsError(what, problems, values, frozenset(raw))
    return values


def _from_env(kind: type, text: str) -> object:
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
    elif kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    elif kind is tuple:
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def _check(rule: Rule, value: object) -> object:
    kind = rule.kind
    if kind is tuple and isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise ValueError("must be a list of strings")
        value = tuple(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
        # YAML reads an unquoted 0xC659… as a hex number, and 1e5 or 0755 as numbers too.
        raise ValueError(
            "must be text, but YAML read it as a number (an unquoted 0x… is a hex number): "
            "put the value in quotes"
        )
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        shown = "********" if rule.secret else repr(value)
        raise ValueError(f"must be {_KIND_NAMES[kind]}, not {shown}")
    if isinstance(rule.check, tuple) and value not in rule.check:
        raise ValueError(f"must be one of {', '.join(map(str, rule.check))}, not {value!r}")
    if callable(rule.check) and not rule.check(value):
        shown = "********" if rule.secret else repr(value)
        raise ValueError(f"must be {rule.hint}, not {shown}")
    return value
