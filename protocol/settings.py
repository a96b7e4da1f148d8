"""Reading a YAML settings file with environment overrides, the same way for the agent and
the collector: every key has a type and a rule, every problem is reported at once with the
file and key (or variable) it came from, as borgmatic's config validation does."""

import difflib
from collections.abc import Callable, Collection, Mapping
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
        warnings: tuple[str, ...] = (),
    ):
        self.problems = problems
        # When only some settings were wrong: those that passed, and every key given, so a
        # caller can add its own checks and still report every problem at once.
        self.values = values
        self.given = given
        # The variables that name no setting (see unknown_variables), worth telling an owner
        # whose configuration failed: a mistyped name is often why a setting seems missing.
        self.warnings = warnings
        super().__init__(f"invalid {what} configuration:\n  " + "\n  ".join(problems))


class Settings(dict):
    """The values read, by key, and a sentence for each variable that named no setting."""

    warnings: tuple[str, ...] = ()


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
    own_variables: Collection[str] = (),
    other_variables: Collection[str] = (),
) -> Settings:
    """Values from the file at ``path`` (which may be missing unless ``explicit``), then from
    ``env_prefix + KEY`` variables and ``aliases`` (variable name -> key), all checked.

    Every other ``env_prefix`` variable is warned about (``Settings.warnings``), but for
    ``own_variables`` (those the program reads itself, such as the config file's) and
    ``other_variables`` (another program's that shares the prefix)."""
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
    known = [env_prefix + name.upper() for name in rules] + [*(aliases or {}), *own_variables]
    warnings = tuple(unknown_variables(what, environ, env_prefix, known, other_variables))

    values, problems = Settings(), []
    values.warnings = warnings
    for key, (value, where, text) in raw.items():
        if key not in rules:
            problems.append(f"{where}: unknown setting")
            continue
        try:
            values[key] = _check(rules[key], value, None if text is None else f'{key}: "{text}"')
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    if problems:
        raise SettingsError(what, problems, values, frozenset(raw), warnings)
    return values


def unknown_variables(
    what: str,
    environ: Mapping[str, str],
    env_prefix: str,
    known: Collection[str],
    other_variables: Collection[str] = (),
) -> list[str]:
    """A sentence for each ``env_prefix`` variable in ``environ`` that is neither ``known``
    nor one of ``other_variables``, with the known one it most resembles: a mistyped name
    (TASSIUM_INTERVALL) would otherwise be ignored without a word. A warning, not an error:
    the variable may be meant for a tool that is not ours."""
    # Compared without the prefix, which every name shares and which would make any two
    # names look alike.
    suffixes = {
        name.removeprefix(env_prefix): name for name in known if name.startswith(env_prefix)
    }
    found = []
    for variable in sorted(environ):
        if not variable.startswith(env_prefix) or variable in known or variable in other_variables:
            continue
        sentence = f"{variable} is not a setting of the {what}: it is ignored"
        close = difflib.get_close_matches(
            variable.removeprefix(env_prefix), suffixes, n=1, cutoff=0.7
        )
        found.append(sentence + (f"; did you mean {suffixes[close[0]]}?" if close else ""))
    return found


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
