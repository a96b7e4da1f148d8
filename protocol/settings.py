"""Reading a YAML settings file with environment overrides, the same way for the agent and
the collector: every key has a type and a rule, every problem is reported at once with the
file and key (or variable) it came from, as borgmatic's config validation does."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
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
    # key -> (value, where it came from, the text the file wrote for it, if a plain scalar)
    raw: dict[str, tuple[object, str, str | None]] = {}
    if path.exists():
        try:
            document, written = _load_yaml(path.read_bytes())
            document = document or {}
        except OSError as exc:
            raise SettingsError(what, [f"{path}: cannot be read: {exc.strerror}"]) from None
        except yaml.YAMLError as exc:
            raise SettingsError(what, [f"{path}: cannot be read: {_yaml_problem(exc)}"]) from None
        if not isinstance(document, dict):
            raise SettingsError(what, [f"{path}: must be a mapping of keys to values"])
        for key, value in document.items():
            raw[str(key)] = (value, f"{path}: {key}", written.get(str(key)))
    elif explicit:
        raise SettingsError(what, [f"{path}: no such file"])

    for name, rule in rules.items():
        variable = env_prefix + name.upper()
        if variable in environ:
            raw[name] = (_from_env(rule.kind, environ[variable]), variable, None)
    for variable, name in (aliases or {}).items():
        if variable in environ:
            raw[name] = (_from_env(rules[name].kind, environ[variable]), variable, None)

    values, problems = {}, []
    for key, (value, where, text) in raw.items():
        if key not in rules:
            problems.append(f"{where}: unknown setting")
            continue
        try:
            values[key] = _check(rules[key], value, None if text is None else f'{key}: "{text}"')
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    if problems:
        raise SettingsError(what, problems, values, frozenset(raw))
    return values


def _load_yaml(data: bytes) -> tuple[object, dict[str, str]]:
    """The document, and the text written for each top-level key whose value is a plain
    (unquoted) scalar, so a refusal can show the owner what to quote."""
    # Bytes, not text: PyYAML then reports a file that is not UTF-8 as a YAMLError.
    loader = yaml.SafeLoader(data)
    try:
        node = loader.get_single_node()
        document = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    written = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(value, yaml.ScalarNode) and value.style is None:
                written[str(key.value)] = value.value
    return document, written


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message on one line, naming the line and column in the file (its own text
    spans several lines and calls the file "<byte string>")."""
    if isinstance(exc, yaml.reader.ReaderError):
        if exc.encoding != "unicode":  # PyYAML's name for "decoded, but not allowed"
            return f"not {exc.encoding.upper()} text (byte {exc.position + 1})"
        return f"holds a character YAML does not allow (#x{exc.character:04x})"
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or problem is None:
        return " ".join(str(exc).split())
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    return f"not valid YAML at {where}: {problem}" + (f" ({context})" if context else "")


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


# What YAML makes of an unquoted value that was meant as text (bool before int: a bool is one).
_YAML_READ_AS = ((bool, "true or false"), (int | float, "a number"), (date, "a date"))


def _check(rule: Rule, value: object, quoted: str | None = None) -> object:
    """``value`` if it follows ``rule``; ``quoted`` is how the file would write it as text
    (``key: "…"``), shown when YAML read an unquoted value as something else."""
    kind = rule.kind
    if value is None:
        raise ValueError("is empty: give it a value, or remove the line to get the default")
    if kind is tuple and isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise ValueError("must be a list of strings")
        value = tuple(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    read_as = next((name for t, name in _YAML_READ_AS if isinstance(value, t)), None)
    if kind is str and read_as:
        # Unquoted, YAML reads 0xC659… (hex), 0755 (octal) and 1.5 as numbers, yes and off
        # as booleans, 2026-01-01 as a date: repeating the number it made is no help.
        example = f", as in {quoted}" if quoted and not rule.secret else ""
        raise ValueError(
            f"must be text, but YAML read it as {read_as}: put the value in quotes{example}"
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
