"""Who is asking, and what they may do: the operator (the ``api_token``), a wallet signed in
(collector/identity/sign_in.py), or nobody.

- Operator routes (payouts, payments, enrollment tokens, fleet reports, exports) need the
  operator. A collector without an ``api_token`` has no operator over HTTP: those routes
  are closed, and the operator uses the ``tassium-collector`` command on the server.
- What belongs to a wallet (a deployment, a worker's report and network details) is for
  that wallet's session or the operator. Anonymous writes happen only where a route asks
  for them and the operator turned on ``insecure_anonymous_deployments``.
"""

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from flask import g

from collector.errors import ApiError
from collector.store.models import WalletSession
from collector.web.api import ACCESS, bearer_token, settings
from protocol.times import utcnow

# Session tokens start with this, so one is told apart from an operator token at a glance
# (and in a leaked log line).
SESSION_PREFIX = "tss_"  # noqa: S105 - a prefix, not a secret


@dataclass(frozen=True)
class Caller:
    operator: bool = False
    session: WalletSession | None = None

    @property
    def wallet(self) -> str | None:
        return self.session.wallet_address if self.session else None


def token_hash(token: str) -> str:
    """How a token is kept (a wallet's session, an enrollment token): a copy of the database
    signs nobody in and enrolls nothing."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def caller() -> Caller:
    """Who sent this request (asked once per request). A token that is given but valid for
    nobody is a 401: a client must learn that its session ended, not be served as a
    stranger."""
    if "tassium_caller" not in g:
        g.tassium_caller = _identify(bearer_token())
    return g.tassium_caller


def _identify(given: str) -> Caller:
    if not given:
        return Caller()
    expected = settings().api_token
    if expected and hmac.compare_digest(given.encode(), expected.encode()):
        return Caller(operator=True)
    if given.startswith(SESSION_PREFIX):
        session = WalletSession.get_or_none(
            (WalletSession.token_hash == token_hash(given)) & (WalletSession.expires_at > utcnow())
        )
        if session is None:
            raise ApiError(401, "the session has expired or was signed out: sign in again")
        return Caller(session=session)
    raise ApiError(401, "the API token is not valid")


def ensure_operator() -> None:
    if settings().api_token is None:
        raise ApiError(
            403,
            "this route is the operator's, and this collector has no api_token: set api_token "
            "(16 characters or more) to use it over HTTP, or use the tassium-collector command",
        )
    who = caller()
    if who.operator:
        return
    if who.session is not None:
        raise ApiError(403, f"this route is the operator's; you are signed in as {who.wallet}")
    raise ApiError(401, "this route needs the operator's token: Authorization: Bearer <api token>")


def require_operator(view: Callable) -> Callable:
    """Mark an operator route: collector/web/api.py's Authenticate step checks it before the
    view runs, like every other access rule."""
    setattr(view, ACCESS, ensure_operator)
    return view


def ensure_wallet(address: str, *, anonymous: bool = False) -> None:
    """Let the request act for ``address`` only when it is the operator or that wallet signed
    in; or, with ``anonymous`` and ``insecure_anonymous_deployments`` on, anybody."""
    who = caller()
    if who.operator or who.wallet == address:
        return
    if who.session is not None:
        raise ApiError(
            403, f"signed in as {who.wallet}: only {address} or the operator may do this"
        )
    if anonymous and settings().insecure_anonymous_deployments:
        return
    raise ApiError(
        401,
        f"sign in as {address} (POST /auth/challenge, then POST /auth/session) and send "
        "Authorization: Bearer <session token>, or send the operator's token",
    )


def may_see_private(address: str) -> bool:
    """Whether this request may see what only a wallet's owner and the operator see: its
    machine's hostname, addresses and key."""
    who = caller()
    return who.operator or who.wallet == address
