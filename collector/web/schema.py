"""Request and response bodies declared once, as ``msgspec`` types, and what is made of them:
a request body decoded into its type or refused with a sentence that names the field
(``decode``), an answer encoded from its type (``answer``), and the route's part of
``/openapi.json`` (``operation``, read by collector/pages/openapi.py).

A field says how it is refused where msgspec's own message would not do, with
``refusal("... {where} ...")`` in its ``Meta``: ``where`` is the field's path in the body
(``heartbeats[2].body``). Rules msgspec cannot express (a wallet's checksum, a name that
must not be taken) stay with their feature, after decoding.
"""

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from flask import Response, request

from collector.errors import ApiError

T = TypeVar("T")

# Where collector/pages/openapi.py puts every declared type.
REF_TEMPLATE = "#/components/schemas/{name}"
_ERROR = "tassium.error"


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A request body: a field nobody reads is an error, not a value silently ignored."""


class Answer(msgspec.Struct, kw_only=True):
    """A response body."""


def refusal(sentence: str) -> dict:
    """``Meta(extra=refusal(...))``: the 400 sentence for a value of the wrong type or out of
    its bounds; ``{where}`` is the field's path."""
    return {_ERROR: sentence}


def wallet_ref() -> dict:
    """``Meta(extra_json_schema=wallet_ref())`` on a wallet field: its pattern depends on the
    collector's wallet format, so the document defines ``Wallet`` per collector."""
    return {"$ref": REF_TEMPLATE.format(name="Wallet")}


_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_FIELD = re.compile(r"`([^`]*)`")


def decode(kind: type[T], raw: bytes | None = None) -> T:
    """The request body (``raw``: these bytes instead) as ``kind``, or a 400 that says what is
    wrong with it. Strings no database can store (NUL, lone surrogates) are refused too."""
    raw = request.get_data(cache=True) if raw is None else raw
    if not raw:
        raise ApiError(400, "request body must be a JSON object")
    try:
        value = msgspec.json.decode(raw, type=kind, strict=True)
    except msgspec.ValidationError as exc:
        raise ApiError(400, _sentence(kind, str(exc))) from None
    except msgspec.DecodeError as exc:
        if b"\\ud" in raw.lower():
            raise ApiError(400, "request body contains a lone UTF-16 surrogate") from None
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    if b"\\u0000" in raw or b"\x00" in raw:
        raise ApiError(400, "request body contains a NUL character")
    return value


def _sentence(kind: type, message: str) -> str:
    """msgspec's message about ``kind`` in our words: the field's path, and its own sentence
    where it declares one."""
    match = _AT.match(message)
    what, path = match["what"], (match["path"] or "")
    where = path.lstrip(".")
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
        return declared.format(where=where)
    return f"{where or 'request body'}: {what[0].lower()}{what[1:].replace('`', '')}"


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _walk(kind: type, path: str) -> list[msgspec.inspect.Type]:
    """The types met along ``path`` (``.a[0].b``), innermost last."""
    met = [msgspec.inspect.type_info(kind)]
    for name, _ in _STEP.findall(path):
        current = _unwrap(met[-1])
        if name and isinstance(current, msgspec.inspect.StructType):
            found = [f.type for f in current.fields if f.encode_name == name]
            if not found:
                break
            met.append(found[0])
        elif not name and isinstance(current, msgspec.inspect.ListType):
            met.append(current.item_type)
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


def _declared_sentence(kind: type, path: str) -> str | None:
    """The innermost ``refusal`` declared on the way to ``path``'s field."""
    info = _walk(kind, path)[-1]
    while True:
        if isinstance(info, msgspec.inspect.Metadata):
            if info.extra and _ERROR in info.extra:
                return info.extra[_ERROR]
            info = info.type
        elif isinstance(info, msgspec.inspect.UnionType):
            sentences = [_declared_in(t) for t in info.types]
            return next((s for s in sentences if s), None)
        else:
            return None


def _declared_in(info: msgspec.inspect.Type) -> str | None:
    if isinstance(info, msgspec.inspect.Metadata) and info.extra:
        return info.extra.get(_ERROR)
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
