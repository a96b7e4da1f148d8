"""The wallet's signature over an enrollment challenge, checked against what wallets' own
libraries sign: eth-account for EIP-191 personal_sign, stellar-sdk for SEP-53."""

import base64
import hashlib

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from stellar_sdk import Keypair

from collector.identity.wallet_proofs import verify_wallet_signature
from protocol import ProtocolError
from protocol.wallets import normalize_wallet, stellar_address

# Non-ASCII on purpose: EIP-191 counts the message's UTF-8 bytes, not its characters.
CHALLENGE = "Tassium enrollment for worker node-7\nNonce: 8f0c1d2e\nÉtape: prouver le wallet"
OWNER_KEY = "0x" + "4c" * 32
OTHER_KEY = "0x" + "9e" * 32
OWNER = Account.from_key(OWNER_KEY).address  # EIP-55 checksummed
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def personal_sign(message: str, key: str = OWNER_KEY) -> str:
    signed = Account.sign_message(encode_defunct(text=message), key)
    return "0x" + bytes(signed.signature).hex()


def with_v(signature: str, v: int) -> str:
    return signature[:-2] + f"{v:02x}"


def refused_evm(signature: str, message: str = CHALLENGE) -> str:
    with pytest.raises(ProtocolError) as refusal:
        verify_wallet_signature("evm", normalize_wallet(OWNER), message, signature)
    return str(refusal.value)


def not_by(address: str) -> str:
    return f"signature is not by wallet {address} over this message"


@pytest.mark.parametrize("spelling", [OWNER, OWNER.lower()], ids=["checksummed", "lower-case"])
def test_it_accepts_the_wallets_personal_sign(spelling):
    verify_wallet_signature("evm", normalize_wallet(spelling), CHALLENGE, personal_sign(CHALLENGE))


def test_it_accepts_v_as_0_or_1_as_well_as_27_or_28():
    signature = personal_sign(CHALLENGE)
    v = int(signature[-2:], 16)
    assert v in (27, 28)

    verify_wallet_signature("evm", normalize_wallet(OWNER), CHALLENGE, with_v(signature, v - 27))


def test_it_refuses_a_signature_over_a_message_one_byte_different():
    changed = CHALLENGE.replace("8f0c1d2e", "8f0c1d2f")

    assert refused_evm(personal_sign(CHALLENGE), changed) == not_by(OWNER.lower())


def test_it_refuses_a_signature_by_another_wallet():
    assert refused_evm(personal_sign(CHALLENGE, OTHER_KEY)) == not_by(OWNER.lower())


@pytest.mark.parametrize(
    "signature",
    [
        personal_sign(CHALLENGE)[:-2],  # 128 hex digits: no v
        personal_sign(CHALLENGE) + "00",
        personal_sign(CHALLENGE)[2:],  # no 0x
        "0x" + "zz" * 65,
        "",
    ],
    ids=["short", "long", "no-0x", "not-hex", "empty"],
)
def test_it_refuses_a_malformed_evm_signature_saying_what_shape_it_needs(signature):
    assert refused_evm(signature) == "signature must be 0x followed by 130 hex digits (r, s and v)"


def test_it_refuses_a_recovery_byte_other_than_27_28_0_or_1():
    assert (
        refused_evm(with_v(personal_sign(CHALLENGE), 5))
        == "signature's v must be 27 or 28 (or 0 or 1), not 5"
    )


def test_it_refuses_the_high_s_twin_of_a_valid_signature():
    raw = bytes.fromhex(personal_sign(CHALLENGE)[2:])
    s = int.from_bytes(raw[32:64], "big")
    # (r, n - s) with the other v recovers the same key: EIP-2 keeps only the low-s one.
    twin = raw[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - raw[64]])

    assert refused_evm("0x" + twin.hex()) == "signature has a high s value, which EIP-2 forbids"


def test_it_refuses_r_or_s_outside_the_curve_order():
    zero_r = "0x" + "00" * 32 + personal_sign(CHALLENGE)[66:]

    assert refused_evm(zero_r) == "signature's r and s must lie between 1 and the curve order"


def test_it_refuses_a_signature_that_is_not_a_string():
    with pytest.raises(ProtocolError, match="^signature must be a string$"):
        verify_wallet_signature("evm", normalize_wallet(OWNER), CHALLENGE, None)


STELLAR_OWNER = Keypair.from_raw_ed25519_seed(bytes(range(32)))
STELLAR_OTHER = Keypair.from_raw_ed25519_seed(bytes(range(1, 33)))


def sep53_sign(keypair: Keypair, message: str = CHALLENGE) -> str:
    """Base64, as Freighter's signMessage returns it."""
    return base64.b64encode(keypair.sign_message(message)).decode("ascii")


def refused_stellar(signature: str, address: str = STELLAR_OWNER.public_key) -> str:
    with pytest.raises(ProtocolError) as refusal:
        verify_wallet_signature(
            "stellar", normalize_wallet(address, "stellar"), CHALLENGE, signature
        )
    return str(refusal.value)


def test_it_accepts_the_stellar_wallets_sep53_signature_in_base64():
    address = normalize_wallet(STELLAR_OWNER.public_key, "stellar")

    verify_wallet_signature("stellar", address, CHALLENGE, sep53_sign(STELLAR_OWNER))


def test_it_accepts_a_sep53_signature_in_hex():
    address = normalize_wallet(STELLAR_OWNER.public_key, "stellar")
    signature = STELLAR_OWNER.sign_message(CHALLENGE).hex()

    verify_wallet_signature("stellar", address, CHALLENGE, signature)


def test_it_refuses_a_sep53_signature_by_another_stellar_key():
    assert refused_stellar(sep53_sign(STELLAR_OTHER)) == not_by(STELLAR_OWNER.public_key)


def test_it_refuses_a_signature_over_the_message_without_the_sep53_prefix():
    bare = base64.b64encode(STELLAR_OWNER.sign(CHALLENGE.encode())).decode("ascii")
    # Nor over the hash without the prefix: only SEP-53's exact bytes count.
    hashed = STELLAR_OWNER.sign(hashlib.sha256(CHALLENGE.encode()).digest()).hex()

    assert refused_stellar(bare) == not_by(STELLAR_OWNER.public_key)
    assert refused_stellar(hashed) == not_by(STELLAR_OWNER.public_key)


@pytest.mark.parametrize(
    "signature",
    ["not base64!", sep53_sign(STELLAR_OWNER)[:-4], sep53_sign(STELLAR_OWNER) + "AAAA", "é"],
    ids=["not-base64", "short", "long", "not-ascii"],
)
def test_it_refuses_a_malformed_stellar_signature_saying_what_shape_it_needs(signature):
    assert refused_stellar(signature) == (
        "signature must be a 64-byte Ed25519 signature, base64-encoded or 128 hex digits"
    )


def test_it_refuses_a_signature_whose_s_is_not_reduced():
    raw = STELLAR_OWNER.sign_message(CHALLENGE)
    order = 2**252 + 27742317777372353535851937790883648493
    # S + L verifies under a lax check, so anyone could alter a signature without the key.
    altered = raw[:32] + (int.from_bytes(raw[32:], "little") + order).to_bytes(32, "little")

    assert refused_stellar(altered.hex()) == "signature is not canonical (S is not reduced)"


def test_it_refuses_a_small_order_stellar_key_that_anyone_could_sign_for():
    identity = stellar_address(bytes([1]) + bytes(31))

    assert refused_stellar(sep53_sign(STELLAR_OWNER), identity) == (
        f"wallet {identity} cannot prove control: "
        "publicKey is a small-order point: anyone could sign for it"
    )
