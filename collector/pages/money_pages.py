"""The operator's money pages, beside the dashboard: ``/dashboard/payouts`` (the recorded
payouts, newest first), ``/dashboard/payouts/<id>`` (one payout and its payments, by wallet)
and ``/dashboard/payments`` (every payment, newest first, with a filter by wallet).

Server-rendered with Jinja like the dashboard, from the models collector/money/payouts.py and
collector/money/payments.py write, and the operator's only: unlike the dashboard, which is
public unless ``private_pages``, they show who was paid what and to which wallet. The
operator's token is asked as ``require_operator`` asks it (a bearer token), or as the
password of HTTP Basic, which a browser asks for after the 401 and keeps sending.
"""

import hmac
import secrets
from collections.abc import Callable

from flask import Blueprint, render_template, request, url_for
from peewee import JOIN, fn

from collector.errors import ApiError
from collector.identity.access import ensure_operator
from collector.store import models
from collector.web.api import ACCESS, MAX_OFFSET, bearer_token, query_int, settings, wallet
from collector.web.schema import OPERATOR, Reply, operation, path_parameter, query

bp = Blueprint("money_pages", __name__, url_prefix="/dashboard")

# Rows a page lists: a payout's row or a payment's is small, but a fleet's payout is a payment
# per worker, so its payments are paged too.
PAGE_SIZE = 25
# What a payout's basis weighs, in what unit (collector/money/payouts.py).
BASIS_UNITS = {
    "uptime": "uptime, weighed in milliseconds",
    "credits": "credits, weighed in thousandths of a credit",
}
# The line that records a payout, for a page with none.
RECORD_LINE = "tassium-collector payout --period P --budget N --record"
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Tassium"'}
_HTML = {"text/html": {"schema": {"type": "string"}}}
_OFFSET = query(
    "offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0}, "skip"
)


def ensure_operator_page() -> None:
    """The operator's token, as a bearer token (``ensure_operator``, with its answers for a
    wallet's session and for a collector without a token), or as a browser's password; a 401
    asks a browser for it."""
    config = settings()
    scheme = request.headers.get("Authorization", "").partition(" ")[0].lower()
    if scheme == "basic" and config.api_token:
        given = bearer_token(browser=True)
        if given and hmac.compare_digest(given.encode(), config.api_token.encode()):
            return
        raise ApiError(401, "the API token is not valid", headers=_CHALLENGE)
    try:
        ensure_operator()
    except ApiError as exc:
        if exc.status == 401:
            exc.headers = {**exc.headers, **_CHALLENGE}
        raise


def operator_page(view: Callable) -> Callable:
    """Mark an operator's page: checked by collector/web/api.py's Authenticate step."""
    setattr(view, ACCESS, ensure_operator_page)
    return view


def _offset() -> int:
    return query_int("offset", 0, 0, MAX_OFFSET)


def _counted():
    """Payouts with their payment counts, counted by the database in the same query."""
    payments = models.Payment.select(fn.COUNT(models.Payment.id)).where(
        models.Payment.payout == models.Payout.id
    )
    return models.Payout.select(models.Payout, payments.alias("payment_count"))


def _page(template: str, status: int = 200, **values):
    nonce = secrets.token_urlsafe(16)
    body = render_template(template, nonce=nonce, basis_units=BASIS_UNITS, **values)
    headers = {
        # Names and wallets come from users and workers: the page is escaped, and on top of
        # that runs no script and no style but its own.
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'nonce-{nonce}'; img-src data:; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        ),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return body, status, headers


def _pages(offset: int, shown: int, total: int, link: Callable[[int], str]) -> dict:
    return {
        "first": offset + 1 if shown else 0,
        "last": offset + shown,
        "total": total,
        "previous": link(max(offset - PAGE_SIZE, 0)) if offset > 0 else None,
        "next": link(offset + PAGE_SIZE) if offset + shown < total else None,
    }


_REPLIES = {
    200: Reply("The page", content=_HTML),
    400: Reply("The page, saying what is wrong with the query", content=_HTML),
}
_AUTH = (
    "HTML for browsers, the operator's: the API token as a bearer token or as the password "
    "of HTTP Basic (a 401 challenges for it)."
)


@bp.get("/payouts")
@operation(
    summary="The payouts page: the recorded payouts, newest first",
    description=_AUTH,
    parameters=(_OFFSET,),
    replies=_REPLIES,
    security=OPERATOR,
    errors=(401, 403, 503),
)
@operator_page
def payouts():
    try:
        offset = _offset()
    except ApiError as exc:
        return _page("money/payouts.html", 400, error=exc.message, payouts=[], pages=None)
    newest = _counted().order_by(models.Payout.created_at.desc(), models.Payout.id.desc())
    rows = list(newest.limit(PAGE_SIZE).offset(offset))
    pages = _pages(
        offset, len(rows), newest.count(), lambda o: url_for(".payouts", offset=o or None)
    )
    return _page("money/payouts.html", error=None, payouts=rows, pages=pages, record=RECORD_LINE)


@bp.get("/payouts/<int:payout_id>")
@operation(
    summary="A payout's page: the payout and its payments, by wallet",
    description=_AUTH,
    parameters=(path_parameter("payout_id", {"type": "integer", "minimum": 0}), _OFFSET),
    replies=_REPLIES,
    security=OPERATOR,
    errors=(401, 403, 404, 503),
)
@operator_page
def payout(payout_id: int):
    found = _counted().where(models.Payout.id == payout_id).first() if payout_id < 2**31 else None
    if found is None:
        raise ApiError(404, f"no payout with id {payout_id}")
    try:
        offset = _offset()
    except ApiError as exc:
        return _page("money/payout.html", 400, error=exc.message, payout=found, payments=[])
    mine = models.Payment.select().where(models.Payment.payout == found.id)
    rows = list(
        mine.order_by(models.Payment.creator, models.Payment.id).limit(PAGE_SIZE).offset(offset)
    )
    link = lambda o: url_for(".payout", payout_id=found.id, offset=o or None)  # noqa: E731
    pages = _pages(offset, len(rows), found.payment_count, link)
    return _page("money/payout.html", error=None, payout=found, payments=rows, pages=pages)


@bp.get("/payments")
@operation(
    summary="The payments page: every payment, newest first, with a filter by wallet",
    description=_AUTH,
    parameters=(query("wallet", {"type": "string"}, "only this wallet's payments"), _OFFSET),
    replies=_REPLIES,
    security=OPERATOR,
    errors=(401, 403, 503),
)
@operator_page
def payments():
    search = request.args.get("wallet", "").strip()
    try:
        address = wallet(search, "wallet") if search else None
        offset = _offset()
    except ApiError as exc:
        # A filter the page cannot read shows nothing, rather than every payment.
        values = {"error": exc.message, "search": search, "wallet": None}
        return _page("money/payments.html", 400, payments=[], pages=None, **values)
    newest = models.Payment.select(models.Payment, models.Payout).join(
        models.Payout, join_type=JOIN.LEFT_OUTER, on=models.Payment.payout == models.Payout.id
    )
    if address is not None:
        newest = newest.where(models.Payment.creator == address)
    newest = newest.order_by(models.Payment.created_at.desc(), models.Payment.id.desc())
    rows = list(newest.limit(PAGE_SIZE).offset(offset))
    link = lambda o: url_for(".payments", wallet=address, offset=o or None)  # noqa: E731
    pages = _pages(offset, len(rows), newest.count(), link)
    values = {"error": None, "search": search, "wallet": address, "record": RECORD_LINE}
    return _page("money/payments.html", payments=rows, pages=pages, **values)
