"""Checking a heartbeat's signature: the collector's side of ``protocol.heartbeat.sign``.
Here, not in protocol/, because it is the collector's alone: libsodium (PyNaCl) verifies,
and the agent, which only signs, installs and loads nothing of it."""

import base64
import binascii

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from protocol import ProtocolError
from protocol.ed25519 import SMALL_ORDER_ENCODINGS, InvalidKey, check_public_key, check_signature
from protocol.heartbeat import SIGNATURE_HEADER

# A public key as the API spells it: the raw 32 bytes, base64 with its padding, the only
# spelling load_public_key reads (which also checks the point).
PUBLIC_KEY_PATTERN = "^[A-Za-z0-9+/]{43}=$"


def _b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ProtocolError(f"{what} is not valid base64") from None


def load_public_key(value: object, *, enrolling: bool = False) -> Ed25519PublicKey:
    """A public key as the wire carries it: the raw 32 bytes, base64. ``enrolling`` checks
    the point fully (canonical, not small-order, prime-order subgroup); otherwise only the
    cheap small-order blocklist, for keys already stored."""
    if not isinstance(value, str):
        raise ProtocolError("publicKey must be a base64 string")
    raw = _b64decode(value, "publicKey")
    if len(raw) != 32:
        raise ProtocolError("publicKey must be a 32-byte Ed25519 key, base64-encoded")
    try:
        if enrolling:
            check_public_key(raw)
        elif raw in SMALL_ORDER_ENCODINGS:
            raise InvalidKey("publicKey is a small-order point: anyone could sign for it")
    except InvalidKey as exc:
        raise ProtocolError(str(exc)) from None
    return Ed25519PublicKey.from_public_bytes(raw)


def verify(public_key: str | Ed25519PublicKey, body: bytes, signature: str | None) -> None:
    """Raise ProtocolError unless ``signature`` is the key's signature of ``body`` (the key
    as the wire carries it, or loaded by ``load_public_key``)."""
    if not signature:
        raise ProtocolError(f"missing {SIGNATURE_HEADER} header")
    raw = _b64decode(signature.strip(), SIGNATURE_HEADER)
    key = public_key if isinstance(public_key, Ed25519PublicKey) else load_public_key(public_key)
    try:
        check_signature(raw)
    except InvalidKey as exc:
        raise ProtocolError(str(exc)) from None
    # libsodium's verification, not OpenSSL's: it costs half as much, on every heartbeat,
    # and accepts no signature OpenSSL refuses (it also refuses small-order R).
    try:
        crypto_sign_open(raw + body, key.public_bytes_raw())
    except BadSignatureError:
        raise ProtocolError("signature does not match the enrolled key") from None
