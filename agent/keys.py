"""The worker's Ed25519 key: generated on the worker, kept 0600, never logged or sent."""

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa

from agent.errors import KeyFileError
from protocol import private_files
from protocol.heartbeat import SigningKey

# The PKCS#8 DER of an Ed25519 key as keygen writes it (RFC 8410), the 32-byte seed after.
_PKCS8_ED25519 = bytes.fromhex("302e020100300506032b657004220420")
_PEM_BEGIN, _PEM_END = b"-----BEGIN PRIVATE KEY-----", b"-----END PRIVATE KEY-----"


@dataclass(frozen=True)
class AgentPublicKey:
    raw: bytes

    def public_bytes_raw(self) -> bytes:
        return self.raw


class AgentKey:
    """The worker's Ed25519 private key, with what the agent does with it: sign.

    pycryptodome, which the agent loads anyway for wallet checksums (protocol/wallets.py),
    signs; ``cryptography`` would cost the daemon about 7 MB resident for the same RFC 8032
    signatures (bench/agent_memory.py). The methods are named as ``cryptography``'s, so the
    protocol (``protocol.heartbeat.SigningKey``) and the tests take either."""

    __slots__ = ("_seed", "_signer", "_public")

    def __init__(self, seed: bytes) -> None:
        key = eddsa.import_private_key(seed)
        self._seed = seed
        self._signer = eddsa.new(key, "rfc8032")
        self._public = AgentPublicKey(key.public_key().export_key(format="raw"))

    @classmethod
    def generate(cls) -> "AgentKey":
        return cls(secrets.token_bytes(32))

    def sign(self, data: bytes) -> bytes:
        return self._signer.sign(data)

    def public_key(self) -> AgentPublicKey:
        return self._public

    def private_bytes_raw(self) -> bytes:
        return self._seed

    def pem(self) -> bytes:
        """PKCS#8 in PEM (RFC 8410), as ``openssl genpkey -algorithm ed25519`` writes it."""
        body = base64.encodebytes(_PKCS8_ED25519 + self._seed)
        return _PEM_BEGIN + b"\n" + body + _PEM_END + b"\n"

    def __repr__(self) -> str:
        return f"<AgentKey {fingerprint(self)}>"


def generate(path: Path) -> AgentKey:
    """Create a new key at ``path``; refuses to overwrite one (that would orphan an enrollment)."""
    key = AgentKey.generate()
    try:
        private_files.create(path, key.pem())
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; remove it first to make a new key") from None
    except OSError as exc:
        raise KeyFileError(f"cannot write the key at {path}: {exc.strerror}") from None
    return key


def load(path: Path) -> AgentKey:
    try:
        data = private_files.read(path)
    except FileNotFoundError:
        raise KeyFileError(f"no key at {path}: run tassium-agent keygen") from None
    except private_files.TooOpen as exc:
        raise KeyFileError(str(exc)) from None
    except OSError as exc:
        raise KeyFileError(f"cannot read the key at {path}: {exc.strerror}") from None
    seed = _seed(data)
    if seed is not None:
        return AgentKey(seed)
    return AgentKey(_seed_of_other_pem(path, data))


def _seed_of_other_pem(path: Path, data: bytes) -> bytes:
    """The seed of a key written by another tool (an OpenSSH key, say), in PEM only."""
    if not data.lstrip().startswith(b"-----BEGIN "):
        raise KeyFileError(f"{path} does not hold a PEM private key")
    if b"ENCRYPTED" in data:
        raise KeyFileError(f"{path} is encrypted: the agent needs an unencrypted key")
    try:
        key = ECC.import_key(data)
    except (ValueError, IndexError, TypeError):
        raise KeyFileError(f"{path} does not hold a PEM private key") from None
    if not key.has_private():
        raise KeyFileError(f"{path} does not hold a PEM private key")
    if key.curve != "Ed25519":
        raise KeyFileError(f"{path} is not an Ed25519 key")
    return key.seed


def _seed(pem: bytes) -> bytes | None:
    """The seed of an unencrypted PKCS#8 Ed25519 key in PEM, or None for anything else."""
    text = pem.strip()
    if not (text.startswith(_PEM_BEGIN) and text.endswith(_PEM_END)):
        return None
    try:
        der = base64.b64decode(text[len(_PEM_BEGIN) : -len(_PEM_END)], validate=False)
    except (binascii.Error, ValueError):
        return None
    if len(der) != len(_PKCS8_ED25519) + 32 or not der.startswith(_PKCS8_ED25519):
        return None
    return der[len(_PKCS8_ED25519) :]


def fingerprint(key: SigningKey) -> str:
    """A short, shareable name for the public half (SHA-256 of the raw public key)."""
    digest = hashlib.sha256(key.public_key().public_bytes_raw()).hexdigest()
    return "SHA256:" + digest[:32]
