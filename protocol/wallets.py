"""Wallet addresses: the one place that decides what a wallet is.

EVM addresses are ``0x`` + 40 hex digits; a mixed-case address must carry a valid EIP-55
checksum (an all-lower or all-upper one has none to check). They are stored lower-case.
Stellar public keys are ``G`` + 55 base32 characters whose decoded bytes end in a CRC16.
"""

import base64
import binascii
import functools
import re

from protocol import ProtocolError, patterns
from protocol.keccak import keccak256

WALLET_FORMATS = ("evm", "stellar")

_EVM = re.compile(patterns.EVM_WALLET)
_STELLAR = re.compile(patterns.STELLAR_WALLET)
_STELLAR_ACCOUNT_VERSION = 6 << 3  # strkey version byte that encodes to a leading "G"


class InvalidWallet(ProtocolError):
    pass


def normalize_wallet(value: object, wallet_format: str = "evm") -> str:
    """Return the stored form of a wallet address, or raise InvalidWallet saying why."""
    if not isinstance(value, str):
        raise InvalidWallet("wallet address must be a string")
    if wallet_format == "stellar":
        return _stellar(value)
    if wallet_format == "evm":
        return _evm(value)
    raise ValueError(f"unknown wallet format {wallet_format!r}")


def _evm(value: str) -> str:
    if not _EVM.fullmatch(value):
        raise InvalidWallet("wallet address must be 0x followed by 40 hex digits")
    digits = value[2:]
    mixed_case = digits != digits.lower() and digits != digits.upper()
    if mixed_case and value != to_checksum_address(value):
        raise InvalidWallet("wallet address fails its EIP-55 checksum")
    return value.lower()


# A collector checks the same workers' checksummed addresses heartbeat after heartbeat:
# each is hashed once.
@functools.lru_cache(maxsize=65_536)
def to_checksum_address(value: str) -> str:
    """The EIP-55 spelling of an EVM address."""
    digits = value[2:].lower()
    digest = keccak256(digits.encode("ascii")).hex()
    return "0x" + "".join(
        c.upper() if int(h, 16) >= 8 else c for c, h in zip(digits, digest[:40], strict=True)
    )


def _stellar(value: str) -> str:
    if not _STELLAR.fullmatch(value):
        raise InvalidWallet(
            "wallet address must be a Stellar public key: G and 55 base32 characters"
        )
    raw = base64.b32decode(value)
    payload, checksum = raw[:-2], raw[-2:]
    if payload[0] != _STELLAR_ACCOUNT_VERSION:
        raise InvalidWallet("wallet address is not a Stellar account public key")
    if _stellar_checksum(payload) != checksum:
        raise InvalidWallet("wallet address fails its Stellar checksum")
    return value


def _stellar_checksum(payload: bytes) -> bytes:
    """A strkey's checksum: CRC16-XModem (polynomial 0x1021, initial value 0, which is
    binascii's CRC-CCITT from 0) of the version byte and key, written little-endian."""
    return binascii.crc_hqx(payload, 0).to_bytes(2, "little")


def stellar_address(public_key: bytes) -> str:
    """The strkey (G...) of a raw 32-byte Ed25519 public key; used by tests and tooling."""
    payload = bytes([_STELLAR_ACCOUNT_VERSION]) + public_key
    return base64.b32encode(payload + _stellar_checksum(payload)).decode("ascii")


def stellar_public_key(address: str) -> bytes:
    """The raw 32-byte Ed25519 public key inside a strkey (G...), the inverse of
    ``stellar_address``; raises InvalidWallet, as ``normalize_wallet`` does, for anything
    that is not an account public key."""
    return base64.b32decode(_stellar(address))[1:-2]
