"""Proof that a worker's owner controls its wallet: the wallet's signature over a one-time
challenge text, made in the owner's browser wallet (issue 20).

EVM wallets sign as EIP-191 ``personal_sign`` (MetaMask and every EIP-1193 wallet, and
eth-account's ``encode_defunct``); Stellar wallets as SEP-53 signed messages (Freighter's
``signMessage``). Each scheme hashes a fixed prefix with the message, so a signed
challenge can never pass for a signed transaction. Here, not in protocol/, because only the
collector checks: a worker's agent signs nothing with a wallet.
"""

import base64
import binascii
import hashlib
import re

from coincurve import PublicKey

from collector.identity.signatures import load_public_key, verify
from protocol import ProtocolError
from protocol.ed25519 import InvalidKey, check_signature
from protocol.keccak import keccak256
from protocol.wallets import stellar_public_key

_EIP191_PREFIX = b"\x19Ethereum Signed Message:\n"
_SEP53_PREFIX = b"Stellar Signed Message:\n"

_EVM_SIGNATURE = re.compile("0x[0-9a-fA-F]{130}")
_HEX_ED25519_SIGNATURE = re.compile("[0-9a-fA-F]{128}")
# The order of secp256k1's base point. EIP-2 refuses s above half of it: (r, n - s) with
# the other v is a second valid signature that anyone can derive from the first.
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
# v as wallets write it: 27/28 in the Ethereum tradition, 0/1 from some hardware wallets.
_RECOVERY_IDS = {27: 0, 28: 1, 0: 0, 1: 1}


def verify_wallet_signature(wallet_format: str, address: str, message: str, signature: str) -> None:
    """Raise ProtocolError unless ``signature`` is the signature of wallet ``address`` (as
    ``normalize_wallet`` returns it) over exactly ``message``, by the scheme the wallet
    format's browser wallets use."""
    if not isinstance(signature, str):
        raise ProtocolError("signature must be a string")
    if wallet_format == "evm":
        _verify_evm(address, message.encode("utf-8"), signature)
    elif wallet_format == "stellar":
        _verify_stellar(address, message.encode("utf-8"), signature)
    else:
        raise ValueError(f"unknown wallet format {wallet_format!r}")


def _verify_evm(address: str, message: bytes, signature: str) -> None:
    if not _EVM_SIGNATURE.fullmatch(signature):
        raise ProtocolError("signature must be 0x followed by 130 hex digits (r, s and v)")
    raw = bytes.fromhex(signature[2:])
    r, s, v = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]
    if v not in _RECOVERY_IDS:
        raise ProtocolError(f"signature's v must be 27 or 28 (or 0 or 1), not {v}")
    if not (0 < r < _SECP256K1_N and 0 < s < _SECP256K1_N):
        raise ProtocolError("signature's r and s must lie between 1 and the curve order")
    if s > _SECP256K1_N // 2:
        raise ProtocolError("signature has a high s value, which EIP-2 forbids")
    digest = keccak256(_EIP191_PREFIX + str(len(message)).encode("ascii") + message)
    try:
        key = PublicKey.from_signature_and_message(
            raw[:64] + bytes([_RECOVERY_IDS[v]]), digest, hasher=None
        )
    except ValueError:
        # No point has this r as its x coordinate: the signature belongs to no key at all.
        raise ProtocolError(f"signature is not by wallet {address} over this message") from None
    signer = "0x" + keccak256(key.format(compressed=False)[1:])[-20:].hex()
    if signer != address:
        raise ProtocolError(f"signature is not by wallet {address} over this message")


def _verify_stellar(address: str, message: bytes, signature: str) -> None:
    raw = _ed25519_signature(signature)
    # Freshly checked in full (small order, subgroup): an owner claims this key now.
    try:
        key = load_public_key(
            base64.b64encode(stellar_public_key(address)).decode("ascii"), enrolling=True
        )
    except ProtocolError as exc:
        raise ProtocolError(f"wallet {address} cannot prove control: {exc}") from None
    # The shared rule first, so a non-canonical signature is refused saying so rather than
    # as a mismatch; verify() then checks it again and has libsodium verify, as for every
    # heartbeat.
    try:
        check_signature(raw)
    except InvalidKey as exc:
        raise ProtocolError(str(exc)) from None
    digest = hashlib.sha256(_SEP53_PREFIX + message).digest()
    try:
        verify(key, digest, base64.b64encode(raw).decode("ascii"))
    except ProtocolError:
        raise ProtocolError(f"signature is not by wallet {address} over this message") from None


def _ed25519_signature(signature: str) -> bytes:
    """Freighter's base64, or the 128 hex digits other Stellar tools print."""
    if _HEX_ED25519_SIGNATURE.fullmatch(signature):
        return bytes.fromhex(signature)
    try:
        raw = base64.b64decode(signature.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != 64:
        raise ProtocolError(
            "signature must be a 64-byte Ed25519 signature, base64-encoded or 128 hex digits"
        )
    return raw
