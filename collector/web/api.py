"""What every route shares: JSON errors, request-body and query parsing, the bearer API
token, pagination and CORS. Rules about particular fields live with their feature.
``ApiError`` is collector/errors.py's and the database-outage answer
collector/web/database_state.py's, so that modules below the routes use them without this one."""

import base64
import functools
import hmac
import json
import re
from collections.abc import Callable, Iterable
from urllib.parse import urlencode, urlsplit

from flask import Flask, Response, current_app, jsonify, request
from peewee import Field, InterfaceError, OperationalError, Query
from playhouse.pool import MaxConnectionsExceeded
from werkzeug.exceptions import HTTPException

from collector.addresses import is_loopback
from collector.config import CollectorConfig
from collector.errors import ApiError, body_too_large
from collector.web.database_state import DatabaseState, database_answered, database_down
from protocol import ProtocolError, patterns
from protocol.heartbeat import SIGNATURE_HEADER
from protocol.wallets import normalize_wallet

DEFAULT_PAGE = 50
MAX_PAGE = 200
MAX_OFFSET = 10**9


def settings() -> CollectorConfig:
    return current_app.config["TASSIUM"]


# The Host header is the caller's to choose: only a plain host[:port] may reach an install
# script or a challenge, by the grammar of public_url, so the URL made from it is one the
# script accepts.
_HOST = re.compile(patterns.AUTHORITY)


def public_url() -> str:
    """What workers and owners reach this collector at, as install scripts, enrollment
    challenges and sign-in messages name it: ``public_url``, else the address this request was
    sent to, but only a loopback one. The Host header is the caller's to choose: a phishing
    site could otherwise have a message naming its own domain issued here."""
    configured = settings().public_url
    if configured:
        return configured.rstrip("/")
    if not _HOST.fullmatch(request.host):
        raise ApiError(400, "the Host header is not a plain host name; set public_url")
    url = f"{request.scheme}://{request.host}"
    if not is_loopback(urlsplit(url).hostname or ""):
        raise ApiError(
            400,
            f"this collector has no public_url, and {request.host} is not a loopback address: "
            "the operator must set public_url (https://...) first",
        )
    return url


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
    # In a body of ASCII bytes without NUL (so UTF-8, not UTF-16 or -32), either can only
    # come from a \u escape: most bodies need no walk through every string.
    if not raw.isascii() or b"\\u" in raw or b"\x00" in raw:
        _check_text(document)
    return document


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


def page_bounds(default: int = DEFAULT_PAGE, maximum: int = MAX_PAGE) -> tuple[int, int]:
    """``?limit=`` and ``?offset=`` of a list: the one rule every bounded list reads, so that
    asking for more than ``maximum`` is a 400 naming the range, never a silent cut."""
    return query_int("limit", default, 1, maximum), query_int("offset", 0, 0, MAX_OFFSET)


def paginated(query: Query, serialize: Callable) -> dict:
    limit, offset = page_bounds()
    return {
        "items": [serialize(row) for row in query.limit(limit).offset(offset)],
        "total": query.count(),
        "limit": limit,
        "offset": offset,
    }


TOTAL_COUNT = "X-Total-Count"


def counted_array(items: list, total: int | None, *, next_page: dict | None = None) -> Response:
    """A list answered as a plain JSON array (the /api/v1 dialect: its clients ``.map`` it, so
    it has no envelope to say it was cut). ``X-Total-Count`` says how many the whole list
    holds (None: not counted, as for keyset pages), and ``Link: rel="next"`` gives this URL
    with ``next_page``'s query parameters changed, when there is more."""
    response = jsonify(items)
    if total is not None:
        response.headers[TOTAL_COUNT] = str(total)
    if next_page is not None:
        query = {**request.args.to_dict(), **{k: str(v) for k, v in next_page.items()}}
        url = request.path + "?" + urlencode(query)
        response.headers["Link"] = f'<{url}>; rel="next"'
    # Browsers on other origins hide any other header from the page's fetch().
    response.headers["Access-Control-Expose-Headers"] = f"{TOTAL_COUNT}, Link"
    return response


def bearer_token(*, browser: bool = False) -> str:
    """The token a request carries as ``Authorization: Bearer``, or (``browser``) as the
    password of HTTP Basic, which a browser asks its user for and then keeps sending; "" when
    it carries none."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if browser and scheme.lower() == "basic" and given:
        try:
            return base64.b64decode(given, validate=True).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return ""
    return given if scheme.lower() == "bearer" else ""


def require_page_token(view: Callable) -> Callable:
    """The dashboard and /metrics need the API token when the operator made them private."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        config = settings()
        if config.private_pages and config.api_token:
            given = bearer_token(browser=True)
            if not given:
                raise ApiError(
                    401,
                    "this page needs the operator's token (Authorization: Bearer, or a "
                    "browser's password)",
                    headers={"WWW-Authenticate": 'Basic realm="Tassium"'},
                )
            if not hmac.compare_digest(given.encode(), config.api_token.encode()):
                raise ApiError(401, "the API token is not valid")
        return view(*args, **kwargs)

    return wrapper


def cors(response: Response, path: str, origin: str | None) -> Response:
    """The CORS headers of an answer to ``path`` for a browser on ``origin``."""
    origins = settings().cors_origins
    # The front ends' dialect is called from browsers on other origins, and the original it
    # replaces answered every origin: "*" there unless the operator names origins.
    allowed = (origins or ("*",)) if path.startswith("/api/v1/") else origins
    if origin and ("*" in allowed or origin in allowed):
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, PATCH, DELETE"
        response.headers["Access-Control-Allow-Headers"] = (
            "Authorization, Content-Type, " + SIGNATURE_HEADER
        )
        response.headers["Access-Control-Max-Age"] = "600"
    if allowed:
        response.vary.add("Origin")
    return response


def init_app(app: Flask, config: CollectorConfig) -> None:
    app.extensions["tassium.database_state"] = DatabaseState()

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(MaxConnectionsExceeded)  # the same errors as db.DATABASE_DOWN
    def _database_down(exc: Exception):
        return database_down(exc)

    app.after_request(database_answered)

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return jsonify(exc.answer()), exc.status, exc.headers

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        messages = {413: body_too_large(config.max_body_bytes).message}
        message = messages.get(exc.code, exc.description)
        # Keep the headers that go with the status, such as a 405's Allow (RFC 9110).
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
        return jsonify(error=message), exc.code, headers

    @app.after_request
    def _cors(response: Response) -> Response:
        return cors(response, request.path, request.headers.get("Origin"))
