"""What every route shares: JSON errors, request-body and query parsing, the bearer API
token, pagination and CORS. Rules about particular fields live with their feature."""

import functools
import hmac
import json
from collections.abc import Callable, Iterable

from flask import Flask, current_app, jsonify, request
from peewee import Field, Query
from werkzeug.exceptions import HTTPException

from collector.config import CollectorConfig
from protocol import ProtocolError
from protocol.wallets import normalize_wallet

MAX_PAGE = 200


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with ``status``; raised inside a
    transaction it also rolls that transaction back, so a rejected request writes nothing."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def settings() -> CollectorConfig:
    return current_app.config["TASSIUM"]


def json_object(raw: bytes | None = None) -> dict:
    """The request body as a JSON object, or a 400 saying what is wrong with it."""
    raw = request.get_data(cache=True) if raw is None else raw
    if not raw:
        raise ApiError(400, "request body must be a JSON object")
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply") from None
    if not isinstance(document, dict):
        raise ApiError(400, "request body must be a JSON object")
    return document


def accept_fields(
    document: dict,
    allowed: Iterable[str],
    aliases: dict[str, str] | None = None,
    required: Iterable[str] = (),
) -> dict:
    """Fold aliases into their canonical names and refuse fields nobody reads, so that a typo
    is an error instead of a silently ignored value. A required field given as null counts as
    missing."""
    aliases = aliases or {}
    result = {}
    for key, value in document.items():
        name = aliases.get(key, key)
        if name not in allowed:
            raise ApiError(400, f"unknown field {key!r}; accepted: {', '.join(sorted(allowed))}")
        if name in result and result[name] != value:
            raise ApiError(400, f"{key!r} and {name!r} name the same field with different values")
        result[name] = value
    for name in required:
        if result.get(name) is None:
            raise ApiError(400, f"{name} is required")
    return result


def by_creator(query: Query, column: Field) -> Query:
    """Narrow a listing to the wallet in the ?creator= query parameter, when one is given."""
    if "creator" not in request.args:
        return query
    return query.where(column == wallet(request.args["creator"], "creator"))


def wallet(value: object, field: str) -> str:
    try:
        return normalize_wallet(value, settings().wallet_format)
    except ProtocolError as exc:
        raise ApiError(400, f"{field}: {exc}") from None


def integer(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"{field} must be a whole number")
    if not low <= value <= high:
        raise ApiError(400, f"{field} must be from {low} to {high}")
    return value


def query_int(name: str, default: int, low: int, high: int) -> int:
    text = request.args.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"query parameter {name} must be a whole number") from None
    if not low <= value <= high:
        raise ApiError(400, f"query parameter {name} must be from {low} to {high}")
    return value


def paginated(query: Query, serialize: Callable) -> dict:
    limit = query_int("limit", 50, 1, MAX_PAGE)
    offset = query_int("offset", 0, 0, 10**9)
    return {
        "items": [serialize(row) for row in query.limit(limit).offset(offset)],
        "total": query.count(),
        "limit": limit,
        "offset": offset,
    }


def require_api_token(view: Callable) -> Callable:
    """Mutating deployment and payment routes need the bearer token once one is configured."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        expected = settings().api_token
        if expected is not None:
            header = request.headers.get("Authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not given:
                raise ApiError(401, "this route needs Authorization: Bearer <api token>")
            if not hmac.compare_digest(given.strip().encode(), expected.encode()):
                raise ApiError(401, "the API token is not valid")
        return view(*args, **kwargs)

    return wrapper


def init_app(app: Flask, config: CollectorConfig) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return jsonify(error=exc.message), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        messages = {413: f"request body is larger than {config.max_body_bytes} bytes"}
        message = messages.get(exc.code, exc.description)
        return jsonify(error=message), exc.code

    origins = set(config.cors_origins)
    if origins:

        @app.after_request
        def _cors(response):
            origin = request.headers.get("Origin")
            if origin and ("*" in origins or origin in origins):
                response.headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin
                response.headers["Access-Control-Allow-Methods"] = "GET, POST, PATCH, DELETE"
                response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
                response.headers["Access-Control-Max-Age"] = "600"
            response.vary.add("Origin")
            return response
