"""protocol/wallets.py: the one function that decides what a wallet address is."""

import base64
import binascii
import secrets

import pytest

from protocol import ProtocolError
from protocol.wallets import InvalidWallet, normalize_wallet, stellar_address, to_checksum_address

# The EIP-55 specification's own test vectors.
EIP55_MIXED_CASE = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]
EIP55_ALL_CAPS = ["0x52908400098527886E0F7030069857D2E4169EE7"]
EIP55_ALL_LOWER = ["0xde709f2102306220921060314715629080e2fb77"]

# Public keys from the Stellar documentation.
STELLAR_DOCUMENTED = [
    "GBRPYHIL2CI3FNQ4BXLFMNDLFJUNPU2HY3ZMFSHONUCEOASW7QC7OX2H",
    "GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7",
]
ACCOUNT_VERSION = 6 << 3


def crc16_xmodem(data: bytes) -> int:
    """CRC16-XModem bit by bit, as the strkey specification writes it: the reference the
    library's (binascii.crc_hqx) is checked against."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def strkey(version: int, key: bytes) -> str:
    """A strkey built independently of the code under test: the checksum little-endian."""
    payload = bytes([version]) + key
    checksum = crc16_xmodem(payload).to_bytes(2, "little")
    return base64.b32encode(payload + checksum).decode("ascii")


def test_the_reference_crc_is_crc16_xmodem():
    # The catalogue's check value of CRC-16/XMODEM, and binascii's CRC-CCITT from 0 agrees.
    assert crc16_xmodem(b"123456789") == 0x31C3 == binascii.crc_hqx(b"123456789", 0)


def swap_case_at(address: str, index: int) -> str:
    return address[:index] + address[index].swapcase() + address[index + 1 :]


# --- EVM ----------------------------------------------------------------------------------


@pytest.mark.parametrize("address", EIP55_MIXED_CASE + EIP55_ALL_CAPS + EIP55_ALL_LOWER)
def test_it_accepts_evm_addresses_and_stores_them_lower_case(address):
    assert normalize_wallet(address) == address.lower()
    assert normalize_wallet(address, "evm") == address.lower()


@pytest.mark.parametrize("address", EIP55_MIXED_CASE)
def test_it_computes_the_eip55_spelling_of_the_test_vectors(address):
    assert to_checksum_address(address.lower()) == address
    assert to_checksum_address(address.upper().replace("0X", "0x")) == address


def test_it_accepts_a_lower_or_upper_case_address_whatever_its_checksum_would_be():
    digits = secrets.token_hex(20)
    assert normalize_wallet("0x" + digits) == "0x" + digits
    assert normalize_wallet("0x" + digits.upper()) == "0x" + digits


@pytest.mark.parametrize("address", EIP55_MIXED_CASE)
def test_it_rejects_a_bad_checksum(address):
    # Swap the case of the last letter: still mixed case, no longer the EIP-55 spelling.
    index = max(i for i, c in enumerate(address) if c.isalpha() and i > 1)
    with pytest.raises(InvalidWallet, match="EIP-55 checksum"):
        normalize_wallet(swap_case_at(address, index))


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("0x" + "a" * 39, id="39-digits"),
        pytest.param("0x" + "a" * 41, id="41-digits"),
        pytest.param("0x", id="prefix-only"),
        pytest.param("", id="empty"),
        pytest.param("a" * 42, id="no-prefix-42-chars"),
        pytest.param("de709f2102306220921060314715629080e2fb77", id="no-prefix"),
        pytest.param("0X" + "a" * 40, id="capital-X"),
        pytest.param("1x" + "a" * 40, id="wrong-prefix"),
        pytest.param("0x" + "g" * 40, id="non-hex"),
        pytest.param("0x" + "a" * 39 + " ", id="trailing-space"),
        pytest.param(" 0x" + "a" * 40, id="leading-space"),
        pytest.param("0x" + "a" * 40 + "\n", id="trailing-newline"),
        pytest.param("0x" + "\uff10" * 40, id="fullwidth-digits"),
    ],
)
def test_it_rejects_evm_addresses_of_the_wrong_shape(address):
    with pytest.raises(InvalidWallet, match="0x followed by 40 hex digits"):
        normalize_wallet(address)


@pytest.mark.parametrize("value", [None, 42, b"0x" + b"a" * 40, ["0x" + "a" * 40], {}])
@pytest.mark.parametrize("wallet_format", ["evm", "stellar"])
def test_it_rejects_a_wallet_that_is_not_a_string(value, wallet_format):
    with pytest.raises(InvalidWallet, match="must be a string"):
        normalize_wallet(value, wallet_format)


def test_an_invalid_wallet_is_a_protocol_error_that_routes_turn_into_a_400():
    with pytest.raises(ProtocolError):
        normalize_wallet("0xnope")


def test_it_refuses_an_unknown_wallet_format_as_a_programming_error():
    with pytest.raises(ValueError, match="unknown wallet format") as caught:
        normalize_wallet(EIP55_ALL_LOWER[0], "bitcoin")
    assert not isinstance(caught.value, InvalidWallet)


# --- Stellar ------------------------------------------------------------------------------


@pytest.fixture
def stellar_key() -> str:
    return stellar_address(secrets.token_bytes(32))


def test_it_accepts_a_stellar_key_built_from_random_bytes_unchanged(stellar_key):
    assert len(stellar_key) == 56
    assert stellar_key.startswith("G")
    assert normalize_wallet(stellar_key, "stellar") == stellar_key


def test_stellar_address_agrees_with_an_independent_strkey_encoder():
    key = secrets.token_bytes(32)
    assert stellar_address(key) == strkey(ACCOUNT_VERSION, key)


@pytest.mark.parametrize("address", STELLAR_DOCUMENTED)
def test_it_accepts_documented_stellar_public_keys(address):
    assert normalize_wallet(address, "stellar") == address


@pytest.mark.parametrize("index", [2, 10, 30, 53, 55])
def test_it_rejects_a_stellar_key_with_one_character_changed(stellar_key, index):
    replacement = "A" if stellar_key[index] != "A" else "B"
    flipped = stellar_key[:index] + replacement + stellar_key[index + 1 :]
    with pytest.raises(InvalidWallet, match="Stellar checksum"):
        normalize_wallet(flipped, "stellar")


def test_it_rejects_a_lower_case_stellar_key(stellar_key):
    with pytest.raises(InvalidWallet, match="G and 55 base32 characters"):
        normalize_wallet(stellar_key.lower(), "stellar")


def test_it_rejects_a_stellar_secret_seed():
    seed = strkey(18 << 3, secrets.token_bytes(32))
    assert seed.startswith("S")
    with pytest.raises(InvalidWallet, match="G and 55 base32 characters"):
        normalize_wallet(seed, "stellar")


def test_it_rejects_a_g_key_with_the_wrong_version_byte():
    # The low three bits of the version byte do not show in the leading "G".
    address = strkey(ACCOUNT_VERSION | 1, secrets.token_bytes(32))
    assert address.startswith("G")
    with pytest.raises(InvalidWallet, match="not a Stellar account public key"):
        normalize_wallet(address, "stellar")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda a: a[:-1], id="55-chars"),
        pytest.param(lambda a: a + "A", id="57-chars"),
        pytest.param(lambda a: a[:40], id="40-chars"),
        pytest.param(lambda a: "G", id="G-only"),
        pytest.param(lambda a: a[:-1] + "1", id="non-base32-digit"),
        pytest.param(lambda a: a[:-1] + "=", id="padding"),
    ],
)
def test_it_rejects_stellar_keys_of_the_wrong_length_or_alphabet(stellar_key, change):
    with pytest.raises(InvalidWallet, match="G and 55 base32 characters"):
        normalize_wallet(change(stellar_key), "stellar")


def test_each_format_rejects_the_other_formats_addresses(stellar_key):
    with pytest.raises(InvalidWallet):
        normalize_wallet(stellar_key, "evm")
    with pytest.raises(InvalidWallet):
        normalize_wallet(EIP55_MIXED_CASE[0], "stellar")
