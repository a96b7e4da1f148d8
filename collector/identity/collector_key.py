"""The collector's signing identity: the Ed25519 key it signs receipts with, where that key
is kept, the history of every key it has signed with, and the public document listing them
(``GET /.well-known/tassium-collector.json``).

Every node of one collector signs with the same key: they share its file (or the setting
holding it). The first process to start without one makes it; the first to start with a key
not yet in ``collector_keys`` records it there. ``tassium-collector receipts-key rotate``
writes a new key and, in one transaction, ends the old one's validity and records the new
one's; earlier keys stay published, so a receipt stays checkable against the key valid at
its time. The private key never leaves its file or setting: no log line, error or answer
holds it."""

import base64
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated

import msgspec
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Blueprint, current_app
from nacl.bindings import crypto_sign, crypto_sign_BYTES, crypto_sign_seed_keypair
from nacl.utils import random as random_bytes
from peewee import DatabaseError

from collector.config import CollectorConfig
from collector.identity.signatures import PUBLIC_KEY_PATTERN
from collector.store.db import database, failure_reason, is_postgres
from collector.store.models import CollectorKeyRecord
from collector.web.schema import Answer, Reply, Timestamp, answer, operation
from protocol import private_files
from protocol.times import format_millis, to_millis, utcnow

log = logging.getLogger(__name__)

WELL_KNOWN_PATH = "/.well-known/tassium-collector.json"
# Where create_app keeps the key of the process (app.extensions).
EXTENSION = "tassium.collector_key"
# A key's id: the first 16 hex digits of the SHA-256 of its raw public key. 64 bits tell a
# collector's few keys apart; a reader checks the key itself, not the id.
KEY_ID_HEX = 16
KEY_ID_PATTERN = f"^[0-9a-f]{{{KEY_ID_HEX}}}$"

_INLINE = (
    "the receipt key is given in the configuration (receipt_key): to rotate it, put a new one "
    "there on every node (openssl rand -base64 32) and restart them, then retire the old one "
    "with tassium-collector receipts-key retire KEY_ID"
)


class CollectorKeyError(Exception):
    """The key cannot be had, or changed, as asked: one sentence, never holding the key."""


def key_id_of(raw_public_key: bytes) -> str:
    return hashlib.sha256(raw_public_key).hexdigest()[:KEY_ID_HEX]


class CollectorKey:
    """The collector's private key, with what it is for: signing. libsodium (PyNaCl) signs,
    as it verifies (collector/identity/signatures.py): a receipt is signed per heartbeat, and
    its binding costs about 60 % of ``cryptography``'s signature or of PyNaCl's SigningKey."""

    __slots__ = ("_secret", "public_key", "key_id")

    def __init__(self, seed: bytes) -> None:
        raw_public, self._secret = crypto_sign_seed_keypair(seed)
        self.public_key = base64.b64encode(raw_public).decode("ascii")
        self.key_id = key_id_of(raw_public)

    @classmethod
    def generate(cls) -> "CollectorKey":
        return cls(random_bytes(32))

    @classmethod
    def from_pem(cls, data: bytes, where: Path) -> "CollectorKey":
        """The key of an unencrypted PKCS#8 PEM file, as ``pem`` or ``openssl genpkey
        -algorithm ed25519`` writes it."""
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            # Not the library's message: it may quote what it could not read.
            key = None
        if not isinstance(key, Ed25519PrivateKey):
            raise CollectorKeyError(
                f"{where} does not hold an unencrypted Ed25519 private key in PEM (PKCS#8)"
            )
        return cls(key.private_bytes_raw())

    def sign(self, message: bytes) -> str:
        """The Ed25519 signature of ``message``, base64 (as signatures.verify reads it)."""
        return base64.b64encode(crypto_sign(message, self._secret)[:crypto_sign_BYTES]).decode()

    def pem(self) -> bytes:
        """The key as its file holds it: PKCS#8 in PEM (RFC 8410)."""
        # libsodium's secret key is the seed followed by the public key.
        return Ed25519PrivateKey.from_private_bytes(self._secret[:32]).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:
        return f"<CollectorKey {self.key_id}>"


# --- where the key is kept -----------------------------------------------------------------


def from_config(config: CollectorConfig) -> CollectorKey:
    """The key the configuration names: given inline, or in its file, made when missing."""
    if config.receipt_key:
        return CollectorKey(base64.b64decode(config.receipt_key))  # checked by the config
    return _file_key(config.receipt_key_path)


def configured_key_id(config: CollectorConfig) -> str | None:
    """The id of the key the configuration names, without making one (None: no file yet)."""
    if config.receipt_key:
        return from_config(config).key_id
    try:
        return read_key_file(config.receipt_key_path).key_id
    except FileNotFoundError:
        return None


def _file_key(path: Path) -> CollectorKey:
    try:
        return read_key_file(path)
    except FileNotFoundError:
        pass
    key = CollectorKey.generate()
    try:
        private_files.create(path, key.pem())
    except FileExistsError:
        # Another process or node made it first: theirs is the one every node signs with.
        return read_key_file(path)
    except OSError as exc:
        raise CollectorKeyError(
            f"cannot create the receipt key at {path}: {exc.strerror} (receipt_key_file names"
            " where it is kept)"
        ) from None
    log.info("made the receipt key %s at %s", key.key_id, path)
    return key


def read_key_file(path: Path) -> CollectorKey:
    """The key in the file at ``path`` (FileNotFoundError when there is none)."""
    try:
        data = private_files.read(path)
    except FileNotFoundError:
        raise
    except private_files.TooOpen as exc:
        raise CollectorKeyError(f"the receipt key {exc}") from None
    except OSError as exc:
        raise CollectorKeyError(f"cannot read the receipt key at {path}: {exc.strerror}") from None
    return CollectorKey.from_pem(data, path)


# --- the history of keys -------------------------------------------------------------------


def record(key: CollectorKey, now: datetime) -> CollectorKeyRecord:
    """The key's row, written as valid from ``now`` unless there is one. Processes and nodes
    starting at once all try: the key id is the primary key, so one insert wins and the
    others change nothing."""
    CollectorKeyRecord.insert(
        key_id=key.key_id, public_key=key.public_key, valid_from=to_millis(now)
    ).on_conflict_ignore().execute()
    recorded = CollectorKeyRecord.get_by_id(key.key_id)
    if recorded.public_key != key.public_key:
        raise CollectorKeyError(f"another key with the id {key.key_id} is recorded: make a new key")
    return recorded


def history() -> list[CollectorKeyRecord]:
    """Every key the collector has signed with, oldest first. Keys are added only by a start
    with a new key or by a rotation, both the operator's doing, so the list stays short."""
    return list(
        CollectorKeyRecord.select().order_by(
            CollectorKeyRecord.valid_from, CollectorKeyRecord.key_id
        )
    )


def current(keys: list[CollectorKeyRecord]) -> CollectorKeyRecord | None:
    """The key valid now, the latest recorded of those without an end."""
    valid = [k for k in keys if k.valid_until is None]
    return max(valid, key=lambda k: k.valid_from, default=None)


def note_start(key: CollectorKey) -> None:
    """Record the key an app starts with, and say what is amiss with it. The database may be
    down or not migrated yet: the well-known document then records it when first asked."""
    try:
        with database.connection_context():
            recorded = record(key, utcnow())
            valid = [k.key_id for k in history() if k.valid_until is None]
    except DatabaseError as exc:
        log.warning("the receipt key %s is not recorded yet: %s", key.key_id, failure_reason(exc))
        return
    others = [key_id for key_id in valid if key_id != key.key_id]
    if recorded.valid_until is not None:
        log.error(
            "this collector signs receipts with the key %s, retired at %s: give it the current "
            "key file (tassium-collector receipts-key show)",
            key.key_id,
            format_millis(recorded.valid_until),
        )
    elif others:
        log.warning(
            "the keys %s are valid besides %s: every node should share one key file "
            "(retire the others with tassium-collector receipts-key retire KEY_ID)",
            ", ".join(others),
            key.key_id,
        )


@dataclass(frozen=True)
class Rotation:
    retired: list[str]  # the ids of the keys whose validity it ended
    current: CollectorKey
    kept: Path  # the old key's file, under a name of its own


def rotate(config: CollectorConfig, now: datetime) -> Rotation:
    """Replace the key in its file by a new one, keeping the old file beside it; end every
    valid key's validity and record the new key's, at ``now``, in one transaction."""
    if config.receipt_key:
        raise CollectorKeyError(_INLINE)
    path = config.receipt_key_path
    try:
        old = read_key_file(path)
    except FileNotFoundError:
        raise CollectorKeyError(
            f"there is no receipt key at {path} to rotate: the collector makes one when it starts"
        ) from None
    kept = path.with_name(f"{path.name}.{old.key_id}.old")
    try:
        private_files.create(kept, old.pem())
    except FileExistsError:
        if read_key_file(kept).key_id != old.key_id:
            raise CollectorKeyError(f"{kept} holds another key: move it away first") from None
    except OSError as exc:
        raise CollectorKeyError(f"cannot keep the old key at {kept}: {exc.strerror}") from None
    new = CollectorKey.generate()
    with database.atomic():
        record(old, now)
        valid = CollectorKeyRecord.select().where(CollectorKeyRecord.valid_until.is_null())
        if is_postgres():
            valid = valid.for_update()
        retired = list(valid)
        # Never before a key's start, whatever another node's clock said then.
        end = to_millis(max([now, *(k.valid_from for k in retired)]))
        CollectorKeyRecord.update(valid_until=end).where(
            CollectorKeyRecord.key_id.in_([k.key_id for k in retired])
        ).execute()
        CollectorKeyRecord.insert(
            key_id=new.key_id, public_key=new.public_key, valid_from=end
        ).execute()
        # Last, inside the transaction: a key file that cannot be replaced records nothing.
        try:
            private_files.replace(path, new.pem())
        except OSError as exc:
            raise CollectorKeyError(f"cannot write the new key at {path}: {exc.strerror}") from None
    return Rotation([k.key_id for k in retired], new, kept)


def retire(config: CollectorConfig, key_id: str, now: datetime) -> bool:
    """End the validity of the key ``key_id`` at ``now``; False when it had ended already.
    Never the key this configuration signs with: that is what rotate is for."""
    if configured_key_id(config) == key_id:
        raise CollectorKeyError(
            f"{key_id} is the key receipt_key holds: put a new one there first"
            if config.receipt_key
            else f"{key_id} is the key this collector signs with: rotate it instead"
        )
    with database.atomic():
        found = CollectorKeyRecord.get_or_none(CollectorKeyRecord.key_id == key_id)
        if found is None:
            raise CollectorKeyError(f"no key {key_id} is recorded")
        return bool(
            CollectorKeyRecord.update(valid_until=to_millis(max(now, found.valid_from)))
            .where((CollectorKeyRecord.key_id == key_id) & CollectorKeyRecord.valid_until.is_null())
            .execute()
        )


# --- the public document -------------------------------------------------------------------

bp = Blueprint("collector_key", __name__)

KeyId = Annotated[
    str,
    msgspec.Meta(
        pattern=KEY_ID_PATTERN,
        description="the first 16 hex digits of the SHA-256 of the raw public key",
    ),
]


class PublishedKey(Answer):
    keyId: KeyId  # noqa: N815
    publicKey: Annotated[  # noqa: N815
        str,
        msgspec.Meta(pattern=PUBLIC_KEY_PATTERN, description="the raw 32-byte Ed25519 key, base64"),
    ]
    validFrom: Timestamp  # noqa: N815
    validUntil: Timestamp | None  # noqa: N815

    @classmethod
    def of(cls, row: CollectorKeyRecord) -> "PublishedKey":
        until = row.valid_until
        return cls(
            keyId=row.key_id,
            publicKey=row.public_key,
            validFrom=format_millis(row.valid_from),
            validUntil=None if until is None else format_millis(until),
        )


class CollectorKeys(Answer):
    keys: list[PublishedKey]
    current: KeyId | None


@bp.get(WELL_KNOWN_PATH)
@operation(
    summary="The keys the collector signs receipts with, and when each was valid",
    description="Every key it has ever signed with, oldest first: a receipt is checked with "
    "the key its `keyId` names, valid at the receipt's time (`validUntil` null: valid now). "
    "`current` is the key it signs with now.",
    replies={200: Reply("The keys", CollectorKeys)},
    errors=(503,),
)
def well_known():
    keys = history()
    key = current_app.extensions[EXTENSION]
    if all(k.key_id != key.key_id for k in keys):
        # Not recorded when the app started (the database was down, or not migrated yet).
        record(key, utcnow())
        keys = history()
    valid = current(keys)
    return answer(
        CollectorKeys(
            keys=[PublishedKey.of(k) for k in keys],
            current=None if valid is None else valid.key_id,
        )
    )
