"""What every route shares: query parsing, wallets as they enter, the bearer API token and
the private pages' access rule, pagination and CORS. Request bodies are declared as types
(collector/web/schema.py); rules about particular fields live with their feature; errors are
answered by collector/web/pipeline.py. The steps here (``Authenticate``, ``Cors``) are in the
pipeline's list."""

import base64
import hmac
import re
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

from flask import Response, current_app, jsonify, request
from peewee import Field, Query

from collector.addresses import is_loopback
from collector.config import CollectorConfig
from collector.errors import ApiError
from collector.web.steps import Call, Step
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


ACCESS = "tassium_access"


def private_page(view: Callable) -> Callable:
    """The dashboard and /metrics: they need the API token when the operator made them
    private (checked by ``Authenticate``)."""
    setattr(view, ACCESS, ensure_page_token)
    return view


def ensure_page_token() -> None:
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


class Authenticate(Step):
    """The access rule a view declares (``private_page`` here, the operator's in
    collector/identity/access.py), checked before it runs. What a wallet may do with the
    resource it names is the view's to check, once it knows the resource."""

    def before(self, call: Call) -> None:
        check = getattr(call.view, ACCESS, None)
        if check is not None:
            check()


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


class Cors(Step):
    def after(self, call: Call, response: Response) -> Response:
        return cors(response, call.path, call.header("Origin"))
