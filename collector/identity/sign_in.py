"""Signing in with a wallet: a one-time message the wallet signs, exchanged for a short-lived
bearer token that acts for that wallet alone (its deployments; collector/identity/access.py).

The message is Sign-In with Ethereum's (EIP-4361): it names this collector's domain and URI,
the wallet, a nonce and an expiry, so a wallet shows its owner where they are signing in, and
a signature made for another site, another wallet or an earlier sign-in is over another text.
EVM wallets sign it with ``personal_sign`` (EIP-191); Stellar wallets sign the same text,
saying "Stellar account", as a SEP-53 signed message (Freighter's ``signMessage``). Both are
checked by collector/identity/wallet_proofs.py, as enrollment's challenges are.

The collector writes the message and keeps it: a sign-in is accepted only for exactly that
text, once, before it expires. The token is 32 random bytes given once and kept only as its
SHA-256, so a copy of the database signs nobody in. The routes are also under ``/api/v1``,
for an updated front end.
"""

import re
import secrets
from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import urlsplit

from flask import Blueprint
from msgspec import UNSET, Meta, UnsetType

from collector.errors import ApiError
from collector.identity.access import SESSION_PREFIX, caller, token_hash
from collector.identity.wallet_proofs import verify_wallet_signature
from collector.store import models
from collector.store.models import WalletSession
from collector.web.api import public_url, settings, wallet
from collector.web.schema import (
    OWNER,
    Answer,
    Body,
    Reply,
    Timestamp,
    Wallet,
    answer,
    decode,
    operation,
    refusal,
    spelled,
)
from protocol import ProtocolError
from protocol.times import format_timestamp, utcnow

bp = Blueprint("sign_in", __name__, url_prefix="/auth")

# Long enough to open a wallet and read what it shows; short enough that a message left on
# a screen is soon worth nothing.
CHALLENGE_TTL = timedelta(minutes=5)
# Challenges are kept a day past their expiry, so a late signature is told it expired
# rather than that it is unknown.
CHALLENGES_KEPT = timedelta(days=1)
_ACCOUNT = {"evm": "Ethereum", "stellar": "Stellar"}
_FIRST_LINE = re.compile(
    r"(?P<domain>\S+) wants you to sign in with your (Ethereum|Stellar) account:"
)
_NONCE_LINE = re.compile(r"^Nonce: (?P<nonce>[A-Za-z0-9]{8,64})$", re.M)
STATEMENT = (
    "Sign in to this Tassium collector to manage the deployments of this wallet. It moves no funds."
)

# A wallet's signature over a text this collector wrote (collector/identity/wallet_proofs.py
# checks it): a sign-in message here, an enrollment challenge in collector/uptime/enrollment.py.
WalletSignature = Annotated[
    str,
    Meta(
        description="0x and 130 hex digits (EVM personal_sign), or base64 (Stellar SEP-53)",
        extra=refusal("{where} must be a string"),
    ),
]
_NOT_SIGNED_IN = "not signed in: send Authorization: Bearer <session token>"


class SignInRequest(Body):
    wallet: Wallet | None = None
    walletAddress: Annotated[Wallet | None, Meta(description="the same as wallet")] = None


class SignInChallenge(Answer):
    walletAddress: Wallet
    message: Annotated[
        str,
        Meta(
            description="EIP-4361 (Sign-In with Ethereum) text naming this collector's domain; "
            "Stellar wallets sign the same text as SEP-53"
        ),
    ]
    nonce: Annotated[str, Meta(pattern="^[0-9a-f]{32}$")]
    expiresAt: Timestamp


class SignInSignature(Body):
    message: Annotated[
        str, Meta(description="exactly the text issued", extra=refusal("{where} must be a string"))
    ]
    signature: WalletSignature


class Session(Answer):
    token: Annotated[str, Meta(pattern=f"^{SESSION_PREFIX}[A-Za-z0-9_-]{{43}}$")]
    walletAddress: Wallet
    expiresAt: Timestamp


class SessionInfo(Answer):
    """The operator's token acts for no one wallet: its answer is only operator."""

    operator: bool
    walletAddress: Wallet | UnsetType = UNSET
    expiresAt: Timestamp | UnsetType = UNSET


def message_text(collector: str, address: str, nonce: str, issued: datetime, expires: datetime):
    """The EIP-4361 message for ``address`` signing in at ``collector`` (a URL)."""
    wallet_format = settings().wallet_format
    lines = [
        f"{urlsplit(collector).netloc} wants you to sign in with your "
        f"{_ACCOUNT[wallet_format]} account:",
        address,
        "",
        STATEMENT,
        "",
        f"URI: {collector}",
        "Version: 1",
    ]
    if wallet_format == "evm":
        lines.append("Chain ID: 1")  # EIP-4361 requires one; the sign-in is on no chain
    lines += [
        f"Nonce: {nonce}",
        f"Issued At: {format_timestamp(issued)}",
        f"Expiration Time: {format_timestamp(expires)}",
    ]
    return "\n".join(lines)


def create_challenge(address: str, now: datetime) -> models.SignInChallenge:
    nonce = secrets.token_hex(16)  # EIP-4361: at least 8 letters and digits
    expires = now + CHALLENGE_TTL
    return models.SignInChallenge.create(
        nonce=nonce,
        wallet_address=address,
        message=message_text(public_url(), address, nonce, now, expires),
        created_at=now,
        expires_at=expires,
    )


def _issued_challenge(message: str) -> models.SignInChallenge:
    """The challenge this collector issued as exactly ``message``, or a 401 saying why the
    message is not one: for another site, unknown, or altered."""
    first = _FIRST_LINE.fullmatch(message.split("\n", 1)[0])
    nonce = _NONCE_LINE.search(message)
    if first is None or nonce is None:
        raise ApiError(400, "message is not a sign-in message from POST /auth/challenge")
    ours = urlsplit(public_url()).netloc
    if first["domain"] != ours:
        raise ApiError(
            401, f"this sign-in message is for {first['domain']}, not this collector ({ours})"
        )
    challenge = models.SignInChallenge.get_or_none(models.SignInChallenge.nonce == nonce["nonce"])
    if challenge is None:
        raise ApiError(401, "this collector issued no such sign-in: ask for a new one")
    if challenge.message != message:
        raise ApiError(401, "the message differs from the one this collector issued")
    return challenge


def sign_in(message: str, signature: str, now: datetime) -> tuple[str, WalletSession]:
    """Open a session for the wallet that signed ``message``: the new token, and its row."""
    challenge = _issued_challenge(message)
    state = challenge.state(now)
    if state == "used":
        raise ApiError(401, "this sign-in message was used already: ask for a new one")
    if state == "expired":
        raise ApiError(401, "this sign-in message has expired: ask for a new one")
    try:
        verify_wallet_signature(
            settings().wallet_format, challenge.wallet_address, challenge.message, signature
        )
    except ProtocolError as exc:
        raise ApiError(401, str(exc)) from None
    if not challenge.consume(now):
        raise ApiError(401, "this sign-in message was used already: ask for a new one")
    token = SESSION_PREFIX + secrets.token_urlsafe(32)
    session = WalletSession.create(
        token_hash=token_hash(token),
        wallet_address=challenge.wallet_address,
        created_at=now,
        expires_at=now + timedelta(seconds=settings().session_ttl),
    )
    return token, session


def prune(now: datetime) -> int:
    """Delete expired sessions and old challenges; return how many rows went."""
    return (
        WalletSession.delete().where(WalletSession.expires_at <= now).execute()
        + models.SignInChallenge.delete()
        .where(models.SignInChallenge.expires_at < now - CHALLENGES_KEPT)
        .execute()
    )


# Every route reads the database; a body is read and parsed, and a write is rate-limited
# (collector/web/ratelimits.py).
_WRITE = (400, 408, 413, 503)  # and a 429 (collector/pages/openapi.py)


@bp.post("/challenge")
@operation(
    summary="A one-time sign-in message (EIP-4361) for a wallet to sign",
    body=SignInRequest,
    replies={201: Reply("Made; the wallet signs its message", SignInChallenge)},
    errors=_WRITE,
)
def challenge_route():
    address = spelled(decode(SignInRequest), "wallet", "walletAddress", required=True)
    challenge = create_challenge(wallet(address, "wallet"), utcnow())
    shown = SignInChallenge(
        walletAddress=challenge.wallet_address,
        message=challenge.message,
        nonce=challenge.nonce,
        expiresAt=format_timestamp(challenge.expires_at),
    )
    return answer(shown, 201)


@bp.post("/session")
@operation(
    summary="Trade a signed sign-in message for a session token of that wallet",
    body=SignInSignature,
    replies={201: Reply("Signed in", Session)},
    errors=(*_WRITE, 401),
)
def session_route():
    body = decode(SignInSignature)
    token, session = sign_in(body.message, body.signature, utcnow())
    opened = Session(
        token=token,
        walletAddress=session.wallet_address,
        expiresAt=format_timestamp(session.expires_at),
    )
    return answer(opened, 201)


@bp.get("/session")
@operation(
    summary="Who the bearer token acts for",
    security=OWNER,
    replies={200: Reply("The caller", SessionInfo)},
    errors=(401, 503),
)
def whoami_route():
    who = caller()
    if who.operator:
        return answer(SessionInfo(operator=True))
    if who.session is None:
        raise ApiError(401, _NOT_SIGNED_IN)
    return answer(
        SessionInfo(
            operator=False,
            walletAddress=who.session.wallet_address,
            expiresAt=format_timestamp(who.session.expires_at),
        )
    )


@bp.delete("/session")
@operation(
    summary="Sign out: the session token stops working at once",
    security=({"walletSession": []},),
    replies={204: Reply("Signed out")},
    errors=(401, 503),
)
def sign_out_route():
    """Sign out: the token stops working at once, on every node."""
    who = caller()
    if who.session is None:
        raise ApiError(401, _NOT_SIGNED_IN)
    WalletSession.delete().where(WalletSession.token_hash == who.session.token_hash).execute()
    return "", 204
