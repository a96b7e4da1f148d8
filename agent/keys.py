"""The worker's Ed25519 key: generated on the worker, kept 0600, never logged or sent."""

import base64
import binascii
import hashlib
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.errors import KeyFileError

# The PKCS#8 DER of an Ed25519 key as keygen writes it (RFC 8410), the 32-byte seed after:
# read directly, the key spares the daemon cryptography's serialization package (about 3 MB
# resident, with its SSH formats), which loads only for a key written some other way.
_PKCS8_ED25519 = bytes.fromhex("302e020100300506032b657004220420")
_PEM_BEGIN, _PEM_END = b"-----BEGIN PRIVATE KEY-----", b"-----END PRIVATE KEY-----"


def generate(path: Path) -> Ed25519PrivateKey:
    """Create a new key at ``path``; refuses to overwrite one (that would orphan an enrollment)."""
    from cryptography.hazmat.primitives import serialization

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # O_EXCL with the mode at creation: the key is never readable by others, not even briefly.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; remove it first to make a new key") from None
    except OSError as exc:
        raise KeyFileError(f"cannot write the key at {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    return key


def load(path: Path) -> Ed25519PrivateKey:
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"no key at {path}: run tassium-agent keygen") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read the key at {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} is readable by others: chmod 600 {path}")
    seed = _seed(data)
    if seed is not None:
        return Ed25519PrivateKey.from_private_bytes(seed)
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError:
        raise KeyFileError(f"{path} does not hold a PEM private key") from None
    except TypeError:  # what cryptography raises for a key encrypted with a passphrase
        raise KeyFileError(f"{path} is encrypted: the agent needs an unencrypted key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 key")
    return key


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


def fingerprint(key: Ed25519PrivateKey) -> str:
    """A short, shareable name for the public half (SHA-256 of the raw public key)."""
    digest = hashlib.sha256(key.public_key().public_bytes_raw()).hexdigest()
    return "SHA256:" + digest[:32]
