"""Request and response bodies declared once, as ``msgspec`` types, and what is made of them:
a request body decoded into its type or refused with a sentence that names the field
(``decode``), an answer encoded from its type (``answer``), and the route's part of
``/openapi.json`` (``operation``, read by collector/pages/openapi.py).

A field says how it is refused where msgspec's own message would not do, with
``refusal("... {where} ...")`` in its ``Meta``: ``where`` is the field's path in the body
(``heartbeats[2].body``). Rules msgspec cannot express (a wallet's checksum, a name that
must not be taken) stay with their feature, after decoding.
"""

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar

import msgspec
from flask import Response, request

from collector.errors import ApiError
from collector.web.api import DEFAULT_PAGE, MAX_OFFSET, MAX_PAGE

T = TypeVar("T")

# Where collector/pages/openapi.py puts every declared type.
REF_TEMPLATE = "#/components/schemas/{name}"
_ERROR = "tassium.error"


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A request body: a field nobody reads is an error, not a value silently ignored."""


class Answer(msgspec.Struct, kw_only=True):
    """A response body."""


class Error(Answer):
    """Every refusal's body (collector/errors.py's ApiError)."""

    error: str


class Page(Answer, Generic[T]):
    """A page of a list paged by ``?limit=`` and ``?offset=`` (collector/web/api.py's
    ``paginated``), with the whole list's total. A list names its own:
    ``class DeploymentPage(Page[Deployment])``."""

    items: list[T]
    total: Annotated[int, msgspec.Meta(ge=0)]
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)]
    offset: Annotated[int, msgspec.Meta(ge=0)]


# A time to the millisecond, as protocol/times.py's format_millis writes it.
MILLIS_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


def millis_time(description: str) -> Any:
    """A time written by format_millis (the collector's clock, a receipt's times)."""
    return Annotated[
        str,
        msgspec.Meta(
            pattern=MILLIS_PATTERN,
            description=description,
            extra_json_schema={"format": "date-time"},
        ),
    ]


# A time as answered: protocol/times.py's format_timestamp.
Timestamp = Annotated[
    str,
    msgspec.Meta(
        description="RFC 3339; answered in UTC", extra_json_schema={"format": "date-time"}
    ),
]


def refusal(sentence: str, **bounds: str) -> dict:
    """``Meta(extra=refusal(...))``: the 400 sentence for a value of the wrong type or out of
    its bounds; ``{where}`` is the field's path. ``bounds``: a sentence of its own for a value
    past one bound, by the bound's ``Meta`` name (``min_length="{where} must not be empty"``)."""
    return {_ERROR: sentence, **{f"{_ERROR}.{bound}": text for bound, text in bounds.items()}}


def wallet_ref() -> dict:
    """``Meta(extra_json_schema=wallet_ref())`` on a wallet field: its pattern depends on the
    collector's wallet format, so the document defines ``Wallet`` per collector."""
    return {"$ref": REF_TEMPLATE.format(name="Wallet")}


# A wallet address as answered (normalized by collector/web/api.py's wallet()).
Wallet = Annotated[str, msgspec.Meta(extra_json_schema=wallet_ref())]


def whole_number(low: int, high: int, description: str | None = None) -> Any:
    """An integer from ``low`` to ``high``, never a boolean nor a float."""
    between = f"{{where}} must be from {low} to {high}"
    return Annotated[
        int,
        msgspec.Meta(
            ge=low,
            le=high,
            description=description,
            extra=refusal("{where} must be a whole number", ge=between, le=between),
        ),
    ]


def whole_match(regex: re.Pattern | str) -> str:
    """``Meta(pattern=...)`` for one of our ``fullmatch`` patterns. msgspec searches with it
    and JSON Schema reads it as ECMA-262, so it is anchored, its groups are unnamed, and no
    final newline slips past ``$`` (Python's ``$`` allows one)."""
    text = regex.pattern if isinstance(regex, re.Pattern) else regex
    return "^(?:" + re.sub(r"\(\?P<\w+>", "(", text) + r")$(?!\n)"


def spelled(body: msgspec.Struct, name: str, *aliases: str, required: bool = False) -> Any:
    """The value of field ``name``, which a body may also give under ``aliases`` (a front
    end's names for it): None when given under none (a 400 if ``required``), a 400 when two
    spellings disagree."""
    value, given = getattr(body, name), name
    for alias in aliases:
        other = getattr(body, alias)
        if other is None:
            continue
        if value is not None and other != value:
            raise ApiError(
                400, f"{alias!r} and {given!r} name the same field with different values"
            )
        value, given = other, alias
    if value is None and required:
        raise ApiError(400, f"{name} is required")
    return value


# msgspec names the place as `$.a[0].b`, a mapping's value as `$.a[...]` and its key as
# `key` in `$.a`.
_AT = re.compile(r"^(?P<what>.*?)(?: - at (?P<key>`key` in )?`\$(?P<path>[^`]*)`)?$", re.DOTALL)
_FIELD = re.compile(r"`([^`]*)`")


def decode(kind: type[T], raw: bytes | None = None) -> T:
    """The request body (``raw``: these bytes instead) as ``kind``, or a 400 that says what is
    wrong with it. Strings no database can store (NUL, lone surrogates) are refused too."""
    raw = request.get_data(cache=True) if raw is None else raw
    if not raw:
        raise ApiError(400, "request body must be a JSON object")
    # Only a \u escape or a byte outside ASCII can carry them: most bodies are read once. Before
    # the types, so that a NUL in a URL is refused as a NUL, naming its field.
    if not raw.isascii() or b"\\u" in raw or b"\x00" in raw:
        _refuse_unstorable(raw)
    try:
        value = msgspec.json.decode(raw, type=kind, strict=True)
    except msgspec.ValidationError as exc:
        raise ApiError(400, _sentence(kind, str(exc))) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    return value


def _refuse_unstorable(raw: bytes) -> None:
    try:
        document = json.loads(raw)  # unlike msgspec, it lets lone surrogates through to be named
    except (ValueError, RecursionError):
        return  # msgspec says what is wrong with it
    _check_text(document)


def _check_text(value: object, where: str = "request body") -> None:
    """Refuse strings no database can store: NUL (PostgreSQL refuses it) and lone
    surrogates (``"\\ud800"`` decodes to a str that cannot be encoded as UTF-8)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ApiError(400, f"{where} contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, f"{where} contains a lone UTF-16 surrogate") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, where)
            _check_text(item, key if where == "request body" else f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_text(item, f"{where}[{index}]")


def _sentence(kind: type, message: str) -> str:
    """msgspec's message about ``kind`` in our words: the field's path, and its own sentence
    where it declares one."""
    match = _AT.match(message)
    what, path = match["what"], (match["path"] or "")
    where = path.lstrip(".")
    if match["key"]:
        path += _KEY
    named = _FIELD.search(what)
    if what.startswith("Object missing required field"):
        return f"{_join(where, named[1])} is required"
    if what.startswith("Object contains unknown field"):
        accepted = ", ".join(sorted(_fields_at(kind, path)))
        inside = f" in {where}" if where else ""
        return f"unknown field {named[1]!r}{inside}; accepted: {accepted}"
    if not where and what.startswith("Expected `object`"):
        return "request body must be a JSON object"
    declared = _declared_sentence(kind, path)
    if declared:
        return declared.get(f"{_ERROR}.{_bound(what)}", declared[_ERROR]).format(where=where)
    return f"{where or 'request body'}: {what[0].lower()}{what[1:].replace('`', '')}"


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.|key)\]")
_KEY = "[key]"  # our own step: into a mapping's keys


def _walk(kind: type, path: str) -> list[msgspec.inspect.Type]:
    """The types met along ``path`` (``.a[0].b``), innermost last."""
    met = [msgspec.inspect.type_info(kind)]
    for name, step in _STEP.findall(path):
        current = _unwrap(met[-1])
        if name and isinstance(current, msgspec.inspect.StructType):
            found = [f.type for f in current.fields if f.encode_name == name]
            if not found:
                break
            met.append(found[0])
        elif not name and isinstance(current, msgspec.inspect.ListType):
            met.append(current.item_type)
        elif not name and isinstance(current, msgspec.inspect.DictType):
            met.append(current.key_type if step == "key" else current.value_type)
        else:
            break
    return met


def _unwrap(info: msgspec.inspect.Type) -> msgspec.inspect.Type:
    while True:
        if isinstance(info, msgspec.inspect.Metadata):
            info = info.type
        elif isinstance(info, msgspec.inspect.UnionType):
            inner = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
            if len(inner) != 1:
                return info
            info = inner[0]
        else:
            return info


def _fields_at(kind: type, path: str) -> list[str]:
    current = _unwrap(_walk(kind, path)[-1])
    if isinstance(current, msgspec.inspect.StructType):
        return [f.encode_name for f in current.fields]
    return []


# msgspec's words for a value past a bound (``Expected `int` >= 1``), and the bound's name.
_BOUNDS = (
    ("of length >=", "min_length"),
    ("of length <=", "max_length"),
    ("matching regex", "pattern"),
    (">=", "ge"),
    ("<=", "le"),
    (">", "gt"),
    ("<", "lt"),
)


def _bound(what: str) -> str | None:
    if ", got `" in what:
        return None  # the wrong type
    return next((name for words, name in _BOUNDS if f"` {words} " in what), None)


def _declared_sentence(kind: type, path: str) -> dict | None:
    """The innermost ``refusal`` declared on the way to ``path``'s field."""
    info = _walk(kind, path)[-1]
    while True:
        if isinstance(info, msgspec.inspect.Metadata):
            if info.extra and _ERROR in info.extra:
                return info.extra
            info = info.type
        elif isinstance(info, msgspec.inspect.UnionType):
            sentences = [_declared_in(t) for t in info.types]
            return next((s for s in sentences if s), None)
        else:
            return None


def _declared_in(info: msgspec.inspect.Type) -> dict | None:
    if isinstance(info, msgspec.inspect.Metadata) and info.extra and _ERROR in info.extra:
        return info.extra
    return None


def answer(
    body: msgspec.Struct | list | dict, status: int = 200, headers: dict | None = None
) -> Response:
    """A JSON response from a declared answer."""
    return Response(
        msgspec.json.encode(body) + b"\n",
        status=status,
        headers=headers,
        mimetype="application/json",
    )


# --- the routes' part of /openapi.json -----------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """A query, path or header parameter, as the document lists it."""

    name: str
    where: str  # "query", "path" or "header"
    schema: dict
    description: str = ""
    required: bool = False

    def document(self) -> dict:
        found = {
            "name": self.name,
            "in": self.where,
            "required": self.required or self.where == "path",
            "schema": self.schema,
        }
        if self.description:
            found["description"] = self.description
        return found


def query(name: str, schema: dict, description: str) -> Parameter:
    return Parameter(name, "query", schema, description)


def path_parameter(name: str, schema: dict) -> Parameter:
    return Parameter(name, "path", schema)


def limit(default: int, maximum: int, description: str) -> Parameter:
    """A list's ``?limit=``: more than ``maximum`` is a 400 naming the range."""
    schema = {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}
    return query("limit", schema, description)


# A route's {address}: a wallet.
WALLET_IN_PATH = path_parameter("address", wallet_ref())

# A Page's parameters (collector/web/api.py's page_bounds).
PAGE = (
    limit(DEFAULT_PAGE, MAX_PAGE, "page size"),
    query("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0}, "skip"),
)


# Who may call, by the document's securitySchemes (collector/pages/openapi.py). The operator's
# routes and the private pages are read from their views' access rules; a view that checks a
# wallet itself says OWNER.
OPERATOR = ({"apiToken": []},)
OWNER = ({"apiToken": []}, {"walletSession": []})
PRIVATE_PAGE = ({"apiToken": []}, {})  # the token, when the operator made the pages private


@dataclass(frozen=True)
class Reply:
    """One status a route answers: a declared type, raw content by media type, or nothing."""

    description: str
    kind: type | None = None
    content: dict | None = None  # {"text/csv": {"schema": {...}}}, when not JSON of a type
    headers: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    """What ``/openapi.json`` says about one method of one route."""

    summary: str
    replies: dict[int, Reply]
    errors: tuple[int, ...] = ()
    body: type | None = None
    parameters: tuple[Parameter, ...] = ()
    security: tuple[dict, ...] | None = None
    description: str = ""
    # The shared error responses these refer to: "" (Error) or "Heartbeat" (with serverTime).
    errors_named: str = ""

    def types(self) -> Iterable[type]:
        if self.body is not None:
            yield self.body
        for reply in self.replies.values():
            if reply.kind is not None:
                yield reply.kind


def operation(method: str = "", **declared: Any) -> Callable:
    """Declare a view's operation (``Operation``'s fields); ``method`` when one view serves
    several methods. collector/pages/openapi.py builds the document from these, and a test
    fails for a route without one."""

    def mark(view: Callable) -> Callable:
        operations = dict(getattr(view, "tassium_operations", {}))
        operations[method.lower()] = Operation(**declared)
        view.tassium_operations = operations
        return view

    return mark


def operations_of(view: Callable) -> dict[str, Operation]:
    """The view's declared operations by method ("" for every method it serves)."""
    return getattr(view, "tassium_operations", {})
