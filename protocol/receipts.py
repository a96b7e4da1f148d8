"""Receipts: the collector's signed word that it credited one heartbeat (issue 24).

A receipt is a small JSON body and the collector's Ed25519 signature over its canonical
bytes. The agent keeps receipts, an owner sends them, and anyone holding the collector's
published keys can check them, so the body is written one way only (``canonical``), and
another program can write the same bytes from the same fields:

* a JSON object with exactly the fields of ``Receipt.body()``, keys sorted, no whitespace,
  UTF-8; every value is an integer or a short ASCII string that needs no escaping, so these
  are also the bytes RFC 8785 (JSON Canonicalization Scheme) writes;
* ``"type": "tassium-receipt"`` and ``"v": 1``: the same collector key may one day sign other
  documents (a statement rotating it, say), and the type keeps a receipt's signature from
  being read as one of theirs; the version lets a later body change without old readers
  misreading it (they refuse it, saying so);
* times as RFC 3339 UTC with exactly three fractional digits (``format_millis``): finer
  digits would be noise beside a request's round trip, and a fixed width leaves one way to
  write each instant. A receipt's times are truncated to the millisecond on construction;
  the heartbeat's exact bytes are still pinned by ``heartbeatSha256``;
* durations and credits as integer thousandths (``countedMillis``, ``creditsMillis``), as
  an agent's timestamps carry microseconds and a heartbeat rarely counts whole seconds; at
  most 2**53 - 1, so that any JSON reader, JavaScript's included, reads them exactly.

Nothing here verifies a signature: the protocol imports no crypto library (the agent signs
with pycryptodome, the collector verifies with its own). ``canonical`` gives the message
bytes; the signer and the verifier are the caller's.

A Merkle tree over a period's receipts (protocol/merkle.py) takes ``leaves()``: each
receipt's canonical body followed by its 64 signature bytes, ordered by heartbeat time.
"""

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from protocol import ProtocolError
from protocol.heartbeat import SigningKey
from protocol.times import EARLIEST, LATEST, format_millis, parse_timestamp, to_millis
from protocol.wallets import InvalidWallet, normalize_wallet

VERSION = 1
TYPE = "tassium-receipt"
SIGNATURE_BYTES = 64  # Ed25519, the only kind of key a version 1 receipt is signed with
# What any JSON reader reads exactly (JavaScript's Number.MAX_SAFE_INTEGER).
MAX_INTEGER = 2**53 - 1
# Wide enough for a hex or base64url digest, a date or an "ed25519:" prefix; narrow enough
# that the value never needs escaping in JSON, and so stays canonical by construction.
KEY_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

# The body's fields, as the wire names them; from_body refuses any other.
_FIELDS = frozenset(
    {
        "type",
        "v",
        "keyId",
        "walletAddress",
        "heartbeatTime",
        "heartbeatSha256",
        "windowStart",
        "windowEnd",
        "countedMillis",
        "creditsMillis",
        "collectorTime",
    }
)
# The times, by wire name and by attribute, in the same order.
_TIMES = ("heartbeatTime", "windowStart", "windowEnd", "collectorTime")
_ATTRIBUTES_OF_TIMES = ("heartbeat_time", "window_start", "window_end", "collector_time")
_MILLISECOND = timedelta(milliseconds=1)


def heartbeat_sha256(body: bytes) -> str:
    """The hash a receipt gives of a heartbeat: SHA-256 of the exact request body, in hex."""
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class Receipt:
    """What the collector signs for one credited heartbeat. Every value is checked on
    construction (ProtocolError naming the wire field), so a Receipt is always one that
    ``from_body`` would read back as itself."""

    key_id: str
    wallet: str  # in its stored form: an EVM address lower-case, a Stellar one as is
    heartbeat_time: datetime
    heartbeat_sha256: str
    window_start: datetime  # the window this heartbeat extended (or opened)
    window_end: datetime  # that window's end once this heartbeat counted
    counted_millis: int  # the uptime this heartbeat added, in milliseconds
    credits_millis: int  # the credits it earned, in thousandths
    collector_time: datetime  # when the collector counted it, by its own clock
    version: int = VERSION

    def __post_init__(self) -> None:
        if type(self.version) is not int or self.version != VERSION:
            raise ProtocolError(_version_sentence(self.version))
        if not isinstance(self.key_id, str) or not KEY_ID.fullmatch(self.key_id):
            raise ProtocolError(
                "receipt keyId must be 1 to 64 letters, digits, '.', '_', ':' or '-'"
            )
        _check_wallet(self.wallet)
        if not isinstance(self.heartbeat_sha256, str) or not _SHA256_HEX.fullmatch(
            self.heartbeat_sha256
        ):
            raise ProtocolError("receipt heartbeatSha256 must be 64 lower-case hex digits")
        for attribute, name in zip(_ATTRIBUTES_OF_TIMES, _TIMES, strict=True):
            value = getattr(self, attribute)
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise ProtocolError(f"receipt {name} must be an aware datetime")
            value = to_millis(value)
            if not EARLIEST <= value < LATEST:  # what parse_timestamp reads back
                raise ProtocolError(
                    f"receipt {name} must lie from {format_millis(EARLIEST)} to before "
                    f"{format_millis(LATEST)}"
                )
            # Frozen: the one way to keep the truncated value (see the module's docstring).
            object.__setattr__(self, attribute, value)
        for attribute, name in (
            ("counted_millis", "countedMillis"),
            ("credits_millis", "creditsMillis"),
        ):
            value = getattr(self, attribute)
            if type(value) is not int or not 0 <= value <= MAX_INTEGER:
                raise ProtocolError(f"receipt {name} must be an integer from 0 to {MAX_INTEGER}")
        # What holds for every heartbeat the collector credits: it lies inside the window it
        # extended, and added no more than that window spans (truncating both ends to the
        # millisecond never makes the span shorter than the truncated count).
        if not self.window_start <= self.heartbeat_time <= self.window_end:
            raise ProtocolError(
                "receipt heartbeatTime must lie from its windowStart to its windowEnd"
            )
        span = (self.window_end - self.window_start) // _MILLISECOND
        if self.counted_millis > span:
            raise ProtocolError(
                "receipt countedMillis must be no more than its window spans "
                "(windowEnd - windowStart)"
            )

    def body(self) -> dict:
        """The body as the wire carries it; ``canonical`` writes exactly this."""
        return dict(self._body)  # a copy: the receipt's own stays as signed

    # Made once per receipt: the collector writes each body twice (signed, then answered),
    # per heartbeat. cached_property writes the instance's __dict__, which frozen allows.
    @functools.cached_property
    def _body(self) -> dict:
        return {
            "type": TYPE,
            "v": self.version,
            "keyId": self.key_id,
            "walletAddress": self.wallet,
            "heartbeatTime": format_millis(self.heartbeat_time),
            "heartbeatSha256": self.heartbeat_sha256,
            "windowStart": format_millis(self.window_start),
            "windowEnd": format_millis(self.window_end),
            "countedMillis": self.counted_millis,
            "creditsMillis": self.credits_millis,
            "collectorTime": format_millis(self.collector_time),
        }

    @functools.cached_property
    def _canonical(self) -> bytes:
        b = self._body
        return written(
            key_id=b["keyId"],
            wallet=b["walletAddress"],
            heartbeat_time=b["heartbeatTime"],
            heartbeat_sha256=b["heartbeatSha256"],
            window_start=b["windowStart"],
            window_end=b["windowEnd"],
            counted_millis=b["countedMillis"],
            credits_millis=b["creditsMillis"],
            collector_time=b["collectorTime"],
        )

    @classmethod
    def from_body(cls, value: object) -> "Receipt":
        """Read a body from the wire, or raise ProtocolError saying which field is wrong.
        Strict: only the canonical spelling of each value is taken, so that re-writing a
        body read here gives back the very bytes that were signed."""
        if not isinstance(value, dict):
            raise ProtocolError("receipt body must be a JSON object")
        # The version first: a later version may have other fields, and the sentence a
        # reader needs then is that it is too old, not which field it does not know.
        if "v" not in value:
            raise ProtocolError("receipt body has no v (its version)")
        version = value["v"]
        if type(version) is not int or version != VERSION:
            raise ProtocolError(_version_sentence(version))
        if value.get("type") != TYPE:
            raise ProtocolError(f"receipt type must be {TYPE!r}")
        missing, unknown = _FIELDS - value.keys(), value.keys() - _FIELDS
        if missing:
            raise ProtocolError(f"receipt body has no {', '.join(sorted(missing))}")
        if unknown:
            # Unsigned-for fields would ride along unchecked: refuse them.
            names = ", ".join(sorted(str(k) for k in unknown))
            raise ProtocolError(f"receipt body has fields a version 1 receipt has not: {names}")
        for name in ("keyId", "walletAddress", "heartbeatSha256"):
            if not isinstance(value[name], str):
                raise ProtocolError(f"receipt {name} must be a string")
        return cls(
            key_id=value["keyId"],
            wallet=value["walletAddress"],
            heartbeat_time=_time(value, "heartbeatTime"),
            heartbeat_sha256=value["heartbeatSha256"],
            window_start=_time(value, "windowStart"),
            window_end=_time(value, "windowEnd"),
            counted_millis=value["countedMillis"],
            credits_millis=value["creditsMillis"],
            collector_time=_time(value, "collectorTime"),
            version=version,
        )


def written(
    *,
    key_id: str,
    wallet: str,
    heartbeat_time: str,
    heartbeat_sha256: str,
    window_start: str,
    window_end: str,
    counted_millis: int,
    credits_millis: int,
    collector_time: str,
) -> bytes:
    """The canonical bytes of a version 1 body from its values as the wire writes them (times
    as ``format_millis`` does), checking none of them: what ``canonical`` gives for a Receipt,
    for a signer whose values are valid by construction (the collector signs one per
    heartbeat, and a Receipt's checks cost half as much again as writing it).

    Written out rather than by json.dumps(body, sort_keys=True, separators=(",", ":")), which
    gives the same bytes (the tests hold the two equal) at twice the cost: the keys are in
    sorted order here, and no value needs escaping."""
    return (
        f'{{"collectorTime":"{collector_time}","countedMillis":{counted_millis},'
        f'"creditsMillis":{credits_millis},"heartbeatSha256":"{heartbeat_sha256}",'
        f'"heartbeatTime":"{heartbeat_time}","keyId":"{key_id}",'
        f'"type":"{TYPE}","v":{VERSION},"walletAddress":"{wallet}",'
        f'"windowEnd":"{window_end}","windowStart":"{window_start}"}}'
    ).encode("ascii")


def canonical(receipt: Receipt) -> bytes:
    """The exact bytes the collector signs: the body as canonical JSON (see the module's
    docstring), made once per receipt."""
    return receipt._canonical


@dataclass(frozen=True)
class SignedReceipt:
    """A receipt and the collector's signature over ``canonical(receipt)``."""

    receipt: Receipt
    signature: bytes  # the raw 64 bytes of an Ed25519 signature

    def __post_init__(self) -> None:
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_BYTES:
            raise ProtocolError(f"receipt signature must be {SIGNATURE_BYTES} bytes")

    def message(self) -> bytes:
        """The bytes the signature must verify over, for a verifier's own crypto library."""
        return canonical(self.receipt)

    def leaf(self) -> bytes:
        """This receipt as a Merkle leaf: its canonical body, then its 64 signature bytes.
        The signature's fixed length keeps the split unambiguous, and a leaf binds the very
        signature an owner holds, so a tree's root commits to signed receipts only."""
        return canonical(self.receipt) + self.signature

    def to_json(self) -> dict:
        """The wire form: ``{"body": {...}, "signature": "<base64>"}``."""
        return {
            "body": self.receipt.body(),
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }

    @classmethod
    def from_json(cls, value: object) -> "SignedReceipt":
        """Read the wire form, or raise ProtocolError saying what is wrong. The signature is
        not verified here (no crypto in the protocol): verify ``message()`` against the key
        named by ``receipt.key_id``."""
        if not isinstance(value, dict):
            raise ProtocolError("a receipt must be a JSON object with body and signature")
        unknown = value.keys() - {"body", "signature"}
        if unknown:
            names = ", ".join(sorted(str(k) for k in unknown))
            raise ProtocolError(f"a receipt has only body and signature, not {names}")
        if "body" not in value:
            raise ProtocolError("receipt has no body")
        if "signature" not in value:
            raise ProtocolError("receipt has no signature")
        return cls(Receipt.from_body(value["body"]), _signature(value["signature"]))


def sign(receipt: Receipt, key: SigningKey) -> SignedReceipt:
    """Sign a receipt with the collector's Ed25519 key (any object with ``sign(data)``)."""
    return SignedReceipt(receipt, key.sign(canonical(receipt)))


def leaves(receipts: Iterable[SignedReceipt]) -> list[bytes]:
    """The Merkle leaves of a set of receipts (one wallet's, over one period): ordered by
    heartbeat time, then by the leaf bytes themselves (so that two receipts for one instant,
    which the collector never gives, still have one order), each distinct receipt once (a
    receipt kept twice proves nothing more)."""
    keyed = {(r.receipt.heartbeat_time, r.leaf()) for r in receipts}
    return [leaf for _, leaf in sorted(keyed)]


def _version_sentence(version: object) -> str:
    return f"receipt version {version!r} is not one this program reads (it reads version {VERSION})"


def _check_wallet(value: object) -> None:
    if not isinstance(value, str):
        raise ProtocolError("receipt walletAddress must be a string")
    # A Stellar key starts with G, an EVM address with 0x: the receipt says which it is.
    wallet_format = "stellar" if value.startswith("G") else "evm"
    try:
        stored = normalize_wallet(value, wallet_format)
    except InvalidWallet as exc:
        raise ProtocolError(f"receipt walletAddress: {exc}") from None
    if stored != value:
        raise ProtocolError("receipt walletAddress must be written lower-case")


def _time(body: dict, name: str) -> datetime:
    value = body[name]
    parsed = parse_timestamp(value, f"receipt {name}")
    if format_millis(parsed) != value:
        raise ProtocolError(
            f"receipt {name} must be written like 2026-11-24T21:00:00.000Z "
            "(UTC, a Z and three fractional digits)"
        )
    return parsed


def _signature(value: object) -> bytes:
    sentence = f"receipt signature must be the standard base64 of {SIGNATURE_BYTES} bytes"
    if not isinstance(value, str):
        raise ProtocolError(sentence)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(sentence) from None
    # One spelling per signature: no stray padding bits that would decode alike.
    if len(raw) != SIGNATURE_BYTES or base64.b64encode(raw).decode("ascii") != value:
        raise ProtocolError(sentence)
    return raw
