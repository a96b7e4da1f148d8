"""The worker's Ed25519 key: generated on the worker, kept 0600, never logged or sent."""

import hashlib
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.errors import KeyFileError


def generate(path: Path) -> Ed25519PrivateKey:
    """Create a new key at ``path``; refuses to overwrite one (that would orphan an enrollment)."""
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
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError:
        raise KeyFileError(f"{path} does not hold a PEM private key") from None
    except TypeError:  # what cryptography raises for a key encrypted with a passphrase
        raise KeyFileError(f"{path} is encrypted: the agent needs an unencrypted key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 key")
    return key


def fingerprint(key: Ed25519PrivateKey) -> str:
    """A short, shareable name for the public half (SHA-256 of the raw public key)."""
    digest = hashlib.sha256(key.public_key().public_bytes_raw()).hexdigest()
    return "SHA256:" + digest[:32]
