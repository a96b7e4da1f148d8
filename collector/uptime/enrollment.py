"""Enrolling a worker: binding an agent's key to a wallet, proven by that wallet.

A key is enrolled for a wallet only on the wallet's own word: its signature over a one-time
challenge (below), or a single-use token that the operator issued for that wallet (fleets).
Whoever came first decides nothing, and the same holds for replacing a key (a new machine, a
lost key). Every request that names a key is signed by that key too (proof of possession).

The challenge: the agent asks for one (``POST /workers/enroll/challenge``, signed by its
key); the collector writes a short text naming itself, the wallet, the agent's key and an
expiry, and keeps it. The owner signs that text with the wallet they already use, on the
collector's page ``/enroll/<id>`` (a browser wallet) or by hand (``tassium-agent enroll``
prints it), and the signature is sent to ``POST /workers/enroll/challenge/<id>``, which
enrolls the key once and never again. Decision: one key per wallet, so one machine per
wallet; a wallet's signature for a new key moves the wallet to the new machine.
"""

import math
import re
import secrets
from datetime import datetime, timedelta
from typing import Annotated, Literal

from flask import Blueprint, current_app, render_template, request
from msgspec import Meta
from msgspec.structs import asdict

from collector.config import TOKEN_TTL_MAX, TOKEN_TTL_MIN
from collector.errors import ApiError
from collector.identity.access import require_operator, token_hash
from collector.identity.sign_in import WalletSignature
from collector.identity.signatures import PUBLIC_KEY_PATTERN, load_public_key, verify
from collector.identity.wallet_proofs import verify_wallet_signature
from collector.store.db import database, locked
from collector.store.models import EnrollmentChallenge, EnrollmentToken, Worker
from collector.uptime.heartbeats import SIGNED
from collector.uptime.workers import WorkerSummary
from collector.web.api import public_url, settings, wallet
from collector.web.schema import (
    REF_TEMPLATE,
    Answer,
    Body,
    Reply,
    Timestamp,
    Wallet,
    answer,
    decode,
    operation,
    path_parameter,
    refusal,
    whole_match,
    whole_number,
)
from protocol import ProtocolError, patterns
from protocol.heartbeat import SIGNATURE_HEADER, encode_public_key
from protocol.times import format_timestamp, utcnow
from protocol.wallets import WALLET_FORMATS

bp = Blueprint("enrollment", __name__)

TOKEN_PREFIX = patterns.ENROLLMENT_TOKEN_PREFIX
_TOKEN = re.compile(patterns.ENROLLMENT_TOKEN)
# Long enough to open a link and sign; the agent waits this long at most.
CHALLENGE_TTL = timedelta(minutes=15)
# As a token: kept a while past its expiry, so that a refusal can still be explained.
CHALLENGES_KEPT = timedelta(days=1)
_CHALLENGE_ID = re.compile(r"[A-Za-z0-9_-]{43}")
_MALFORMED = "token must be an enrollment token as issued (tsk_ and 43 characters)"

# A public key as the API spells it (collector/identity/signatures.py).
PublicKey = Annotated[
    str,
    Meta(
        pattern=PUBLIC_KEY_PATTERN,
        description="The 32-byte Ed25519 key, base64",
        extra=refusal(
            "{where} must be a base64 string",
            pattern="{where} must be a 32-byte Ed25519 key, base64-encoded",
        ),
    ),
]
EnrollmentTokenText = Annotated[
    str, Meta(pattern=whole_match(patterns.ENROLLMENT_TOKEN), extra=refusal(_MALFORMED))
]


class ChallengeRequest(Body):
    walletAddress: Wallet
    publicKey: PublicKey


class Enrollment(ChallengeRequest):
    token: EnrollmentTokenText | None = None


class ChallengeSignature(Body):
    signature: WalletSignature


class TokenRequest(Body):
    walletAddress: Wallet
    ttlSeconds: whole_number(TOKEN_TTL_MIN, TOKEN_TTL_MAX) | None = None


class Challenge(Answer):
    challengeId: str
    walletAddress: Wallet
    walletFormat: Literal[WALLET_FORMATS]
    publicKey: PublicKey
    message: Annotated[str, Meta(description="What the wallet signs")]
    expiresAt: Timestamp
    status: Literal["pending", "used", "expired"]
    signUrl: Annotated[str, Meta(description="The page where the owner signs")]


class Enrolled(WorkerSummary):
    enrollment: Literal["enrolled", "unchanged", "replaced"]


class Token(Answer):
    token: EnrollmentTokenText
    walletAddress: Wallet
    expiresAt: Timestamp


# --- enrollment tokens (the operator's) ---------------------------------------------------


def issue_token(wallet_address: str, ttl: timedelta, now: datetime) -> str:
    """Create a single-use enrollment token for one wallet; only its hash is stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    EnrollmentToken.create(
        token_hash=token_hash(token),
        wallet_address=wallet_address,
        created_at=now,
        expires_at=now + ttl,
    )
    return token


def validate_token(value: str) -> str:
    """A token from a query (a body's is its type's)."""
    if not _TOKEN.fullmatch(value):
        raise ApiError(400, _MALFORMED)
    return value


def _usable(token: str, wallet_address: str, now: datetime):
    return (
        (EnrollmentToken.token_hash == token_hash(token))
        & (EnrollmentToken.wallet_address == wallet_address)
        & EnrollmentToken.used_at.is_null()
        & (EnrollmentToken.expires_at > now)
    )


def token_is_usable(token: str, wallet_address: str, now: datetime) -> bool:
    """Whether enrolling with this token would succeed now; it stays unused."""
    return EnrollmentToken.select().where(_usable(token, wallet_address, now)).exists()


# An expired token enrolls nobody, used or not. It is kept a week past its expiry, so that an
# operator asked why a token failed can still see that it was used or expired; then the
# sweeper deletes it (indexed by expires_at).
TOKENS_KEPT = timedelta(days=7)


def prune_tokens(now: datetime) -> int:
    """Delete the tokens expired more than TOKENS_KEPT ago; return how many went."""
    return EnrollmentToken.delete().where(EnrollmentToken.expires_at < now - TOKENS_KEPT).execute()


def _consume_token(token: str, wallet_address: str, now: datetime) -> bool:
    # The conditional update is the single-use guarantee: of two requests racing with one
    # token, only one sees a row change.
    changed = EnrollmentToken.update(used_at=now).where(_usable(token, wallet_address, now))
    return changed.execute() == 1


# --- challenges (the wallet's) ------------------------------------------------------------


def challenge_text(
    collector: str, address: str, public_key: str, nonce: str, expires: datetime
) -> str:
    """What the owner's wallet signs: who asks, for which key, until when. A signature for
    another collector, another key or another challenge is over another text."""
    return (
        f"Enroll a Tassium worker at {collector}\n"
        "\n"
        f"Wallet: {address}\n"
        f"Agent key: {public_key}\n"
        f"Challenge: {nonce}\n"
        f"Expires: {format_timestamp(expires)}\n"
        "\n"
        "Signing lets the machine holding this agent key send heartbeats, and earn uptime, for "
        "this wallet. It moves no funds."
    )


def create_challenge(
    collector: str, address: str, public_key: str, now: datetime
) -> EnrollmentChallenge:
    nonce = secrets.token_urlsafe(32)
    expires = now + CHALLENGE_TTL
    return EnrollmentChallenge.create(
        id=nonce,
        wallet_address=address,
        public_key=public_key,
        message=challenge_text(collector, address, public_key, nonce, expires),
        created_at=now,
        expires_at=expires,
    )


def find_challenge(nonce: str) -> EnrollmentChallenge:
    if not _CHALLENGE_ID.fullmatch(nonce):
        raise ApiError(400, "a challenge id is 43 characters of letters, digits, - and _")
    challenge = EnrollmentChallenge.get_or_none(EnrollmentChallenge.id == nonce)
    if challenge is None:
        raise ApiError(404, f"no enrollment challenge {nonce} at this collector")
    return challenge


def challenge_json(challenge: EnrollmentChallenge, now: datetime) -> Challenge:
    return Challenge(
        challengeId=challenge.id,
        walletAddress=challenge.wallet_address,
        walletFormat=settings().wallet_format,
        publicKey=challenge.public_key,
        message=challenge.message,
        expiresAt=format_timestamp(challenge.expires_at),
        status=challenge.state(now),
        signUrl=f"{public_url()}/enroll/{challenge.id}",
    )


def _token_only() -> ApiError:
    return ApiError(403, "this collector enrolls workers only with an enrollment token")


def _spent(challenge: EnrollmentChallenge) -> ApiError:
    return ApiError(409, f"challenge {challenge.id} was used or has expired: ask again")


def prune_challenges(now: datetime) -> int:
    """Delete the challenges expired more than CHALLENGES_KEPT ago; return how many went."""
    old = EnrollmentChallenge.expires_at < now - CHALLENGES_KEPT
    return EnrollmentChallenge.delete().where(old).execute()


# --- enrolling ----------------------------------------------------------------------------


def is_enrolled(wallet_address: str) -> bool:
    return (
        Worker.select()
        .where((Worker.wallet_address == wallet_address) & Worker.public_key.is_null(False))
        .exists()
    )


def enroll(
    wallet_address: str,
    public_key: str,
    now: datetime,
    *,
    token: str | None = None,
    challenge: EnrollmentChallenge | None = None,
    policy: str = "open",
) -> str:
    """Bind a public key to a wallet on the proof given: an operator's ``token``, or a
    ``challenge`` whose wallet signature was verified. Return what happened: ``enrolled``
    (a new binding), ``unchanged`` (the same key again: no proof needed, nothing changes) or
    ``replaced`` (a new key). Raises ApiError (and so rolls back) for every refusal."""
    with database.atomic():
        Worker.insert(wallet_address=wallet_address, created_at=now).on_conflict_ignore().execute()
        worker = locked(Worker.select().where(Worker.wallet_address == wallet_address)).get()
        if worker.public_key == public_key and challenge is None:
            return "unchanged"
        if token is not None:
            if not _consume_token(token, wallet_address, now):
                raise ApiError(
                    401, "enrollment token is unknown, expired, used or for another wallet"
                )
        elif challenge is not None:
            if policy == "token":
                raise _token_only()
            if not challenge.consume(now):
                raise _spent(challenge)
        else:
            raise ApiError(
                401,
                f"enrolling a key for {wallet_address} needs the wallet's own signature: "
                "run tassium-agent enroll, which asks for a challenge to sign "
                "(POST /workers/enroll/challenge), or give an operator's enrollment token",
            )
        if worker.public_key == public_key:
            return "unchanged"
        replacing = worker.public_key is not None
        worker.public_key = public_key
        worker.enrolled_at = now
        worker.save()
        return "replaced" if replacing else "enrolled"


def _agent_request(kind: type[ChallengeRequest]) -> tuple[ChallengeRequest, str, str]:
    """A request naming an agent's key, signed by that key: its body, wallet and key (in its
    canonical base64 spelling, so the same key always compares equal)."""
    body = decode(kind)
    address = wallet(body.walletAddress, "walletAddress")
    try:
        public_key = encode_public_key(load_public_key(body.publicKey, enrolling=True))
    except ProtocolError as exc:
        raise ApiError(400, str(exc)) from None
    try:
        verify(public_key, request.get_data(cache=True), request.headers.get(SIGNATURE_HEADER))
    except ProtocolError as exc:
        raise ApiError(401, f"the request must be signed by the key it names: {exc}") from None
    return body, address, public_key


def _enrolled_answer(address: str, outcome: str):
    current_app.extensions["tassium.keys"].forget(address)
    # The machine itself, or its owner's signature, asked: it may see its own details.
    shown = WorkerSummary.of(Worker.get_by_id(address), utcnow(), private=True)
    return answer(
        Enrolled(**asdict(shown), enrollment=outcome), 201 if outcome == "enrolled" else 200
    )


# Every route reads the database; a body is read and parsed, and a write is rate-limited
# (collector/web/ratelimits.py).
_WRITE = (400, 408, 413, 503)  # and a 429 (collector/pages/openapi.py)
_CHALLENGE_ID_PARAMETER = path_parameter("nonce", {"type": "string"})


@bp.post("/workers/enroll")
@operation(
    summary="Bind an Ed25519 public key to a wallet with an operator's token (signed by that "
    "key); without one, only the same key again",
    parameters=(SIGNED,),
    body=Enrollment,
    replies={
        200: Reply("The same key was enrolled already, or replaced", Enrolled),
        201: Reply("Enrolled", Enrolled),
    },
    errors=(*_WRITE, 401, 403, 409),
)
def enroll_route():
    """With an operator's token; without one, only the same key again."""
    body, address, public_key = _agent_request(Enrollment)
    outcome = enroll(
        address, public_key, utcnow(), token=body.token, policy=settings().enrollment_policy
    )
    return _enrolled_answer(address, outcome)


@bp.post("/workers/enroll/challenge")
@operation(
    summary="A one-time text for the wallet to sign, naming this collector, the wallet, the "
    "agent key and an expiry (signed by that key)",
    parameters=(SIGNED,),
    body=ChallengeRequest,
    replies={201: Reply("Made; the owner signs its message", Challenge)},
    errors=(*_WRITE, 401, 403),
)
def create_challenge_route():
    if settings().enrollment_policy == "token":
        raise _token_only()
    _, address, public_key = _agent_request(ChallengeRequest)
    now = utcnow()
    challenge = create_challenge(public_url(), address, public_key, now)
    return answer(challenge_json(challenge, now), 201)


@bp.get("/workers/enroll/challenge/<nonce>")
@operation(
    summary="A challenge and its state (pending, used or expired)",
    parameters=(_CHALLENGE_ID_PARAMETER,),
    replies={200: Reply("The challenge", Challenge)},
    errors=(400, 404, 503),
)
def get_challenge_route(nonce: str):
    return answer(challenge_json(find_challenge(nonce), utcnow()))


@bp.post("/workers/enroll/challenge/<nonce>")
@operation(
    summary="The wallet's signature over the challenge (EIP-191 personal_sign or SEP-53): "
    "enrolls its key, once",
    parameters=(_CHALLENGE_ID_PARAMETER,),
    body=ChallengeSignature,
    replies={
        200: Reply("The key was enrolled already, or replaced", Enrolled),
        201: Reply("Enrolled", Enrolled),
    },
    errors=(*_WRITE, 401, 403, 404, 409),
)
def sign_challenge_route(nonce: str):
    """The wallet's signature over the challenge: enrolls its key, once."""
    signature = decode(ChallengeSignature).signature
    challenge = find_challenge(nonce)
    now = utcnow()
    if challenge.state(now) != "pending":
        raise _spent(challenge)  # before the signature is checked: no signature can help
    config = settings()
    try:
        verify_wallet_signature(
            config.wallet_format, challenge.wallet_address, challenge.message, signature
        )
    except ProtocolError as exc:
        raise ApiError(401, str(exc)) from None
    outcome = enroll(
        challenge.wallet_address,
        challenge.public_key,
        now,
        challenge=challenge,
        policy=config.enrollment_policy,
    )
    return _enrolled_answer(challenge.wallet_address, outcome)


@bp.post("/workers/tokens")
@operation(
    summary="Issue a single-use enrollment token for a wallet",
    body=TokenRequest,
    replies={201: Reply("Issued", Token)},
    errors=_WRITE,
)
@require_operator
def create_token_route():
    config = settings()
    if config.api_token is None:
        raise ApiError(
            403,
            "issuing enrollment tokens over HTTP needs an API token configured; "
            "use tassium-collector token create",
        )
    body = decode(TokenRequest)
    address = wallet(body.walletAddress, "walletAddress")
    seconds = config.enrollment_token_ttl if body.ttlSeconds is None else body.ttlSeconds
    ttl = timedelta(seconds=seconds)
    now = utcnow()
    issued = Token(
        token=issue_token(address, ttl, now),
        walletAddress=address,
        expiresAt=format_timestamp(now + ttl),
    )
    return answer(issued, 201)


# --- the owner's page ---------------------------------------------------------------------


def _page_values(nonce: str, now: datetime) -> dict:
    """What the page shows of a challenge, from what GET /workers/enroll/challenge/<id>
    answers (so the page shows nothing the API does not), and what its script needs."""
    challenge = find_challenge(nonce)
    shown = challenge_json(challenge, now)
    worker = Worker.get_or_none(Worker.wallet_address == challenge.wallet_address)
    current = worker.public_key if worker is not None else None
    return {
        "challenge": shown,
        "collector": public_url(),
        "minutes_left": max(0, math.ceil((challenge.expires_at - now) / timedelta(minutes=1))),
        "ttl_minutes": CHALLENGE_TTL // timedelta(minutes=1),
        # The wallet earns on another machine now: signing moves it (one key per wallet).
        "other_key": current if current not in (None, challenge.public_key) else None,
        "script": {
            "wallet": shown.walletAddress,
            "walletFormat": shown.walletFormat,
            "message": shown.message,
            # Relative to the page (…/enroll/<id>), so that it holds under a path prefix too.
            "submitUrl": f"../workers/enroll/challenge/{challenge.id}",
        },
    }


_HTML = {"text/html": {"schema": {"type": "string"}}}


@bp.get("/enroll/<nonce>")
@operation(
    summary="The owner's page for an enrollment challenge: signing it in the browser",
    description="HTML for browsers, open to all (the owner has no API token): the challenge's "
    "wallet, agent key, expiry and text, and a button that has the browser wallet sign the "
    "text and sends the signature to `POST /workers/enroll/challenge/{nonce}`. A used or "
    "expired challenge is a 200 page saying so.",
    parameters=(_CHALLENGE_ID_PARAMETER,),
    replies={
        200: Reply("The page", content=_HTML),
        400: Reply("The page, saying what is wrong with the id", content=_HTML),
        404: Reply(
            "The page, saying no such challenge is known (a path that cannot be a challenge "
            "id at all is the usual JSON error)",
            content={
                **_HTML,
                "application/json": {"schema": {"$ref": REF_TEMPLATE.format(name="Error")}},
            },
        ),
    },
    errors=(503,),
)
def sign_page(nonce: str):
    """The page the install line links to: what the challenge says, and one button that has
    the owner's browser wallet sign it (EIP-1193 ``personal_sign``, or Freighter's
    ``signMessage`` for Stellar) and sends the signature to the route above. A challenge used
    or expired says so; an unknown or malformed id is a 404 or 400 page."""
    csp_nonce = secrets.token_urlsafe(16)
    try:
        values, status = _page_values(nonce, utcnow()), 200
    except ApiError as exc:
        values, status = {"error": exc.message}, exc.status
    body = render_template("enrollment/page.html", csp_nonce=csp_nonce, **values)
    headers = {
        # The page runs no script or style but its own (as the dashboard), may not be framed
        # (a signing button under someone else's page), and leaks its address to no one.
        "Content-Security-Policy": (
            f"default-src 'none'; script-src 'nonce-{csp_nonce}'; "
            f"style-src 'nonce-{csp_nonce}'; connect-src 'self'; img-src data:; "
            "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
        ),
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }
    return body, status, headers
