"""protocol.ed25519: small-order, non-canonical and mixed-order keys are refused, as are
signatures with a non-canonical S; honest keys and signatures pass."""

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.identity.signatures import load_public_key, verify
from protocol import ProtocolError, ed25519
from protocol.heartbeat import encode_public_key, sign

# The known small-order encodings (libsodium's blocklist): the 8 torsion points, canonical
# and with the sign bit or an unreduced y.
SMALL_ORDER = [
    "0100000000000000000000000000000000000000000000000000000000000000",  # identity
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
    "0000000000000000000000000000000000000000000000000000000000000080",  # order 4
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
]
NON_CANONICAL = [
    "0100000000000000000000000000000000000000000000000000000000000080",  # identity, x = -0
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",  # order 2, x = -0
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p + 1
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",  # y = p + 1, sign
]


def b64(hex_key: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_key)).decode()


@pytest.mark.parametrize("key", SMALL_ORDER)
def test_enrollment_refuses_every_small_order_point(key):
    with pytest.raises(ProtocolError, match="small-order"):
        load_public_key(b64(key), enrolling=True)


@pytest.mark.parametrize("key", NON_CANONICAL)
def test_enrollment_refuses_non_canonical_encodings(key):
    with pytest.raises(ProtocolError, match="not canonically encoded"):
        load_public_key(b64(key), enrolling=True)


@pytest.mark.parametrize("key", SMALL_ORDER + NON_CANONICAL[:2])
def test_a_stored_small_order_key_verifies_nothing(key):
    # Keys enrolled before the check existed: the blocklist stops them on every heartbeat.
    with pytest.raises(ProtocolError, match="small-order"):
        load_public_key(b64(key))


def test_a_point_off_the_curve_is_refused():
    # y = 2 has no x on the curve.
    off = (2).to_bytes(32, "little").hex()
    with pytest.raises(ProtocolError, match="not a point on the Ed25519 curve"):
        load_public_key(b64(off), enrolling=True)


def test_a_key_with_a_torsion_component_is_refused():
    honest = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    mixed = ed25519._encode(
        ed25519._add(ed25519._decode(honest), ed25519._decode(bytes.fromhex(SMALL_ORDER[4])))
    )
    with pytest.raises(ProtocolError, match="prime-order subgroup"):
        load_public_key(base64.b64encode(mixed).decode(), enrolling=True)


def test_honest_keys_pass_the_full_check():
    for _ in range(20):
        key = Ed25519PrivateKey.generate()
        loaded = load_public_key(encode_public_key(key), enrolling=True)
        assert loaded.public_bytes_raw() == key.public_key().public_bytes_raw()


def test_the_blocklist_holds_every_known_small_order_encoding():
    assert {bytes.fromhex(k) for k in SMALL_ORDER + NON_CANONICAL[:2]} <= (
        ed25519.SMALL_ORDER_ENCODINGS
    )


def test_the_identity_keys_universal_signature_is_refused():
    # R = identity, S = 0 satisfies the verification equation for the identity key and any
    # message: the forgery the issue reported.
    forged = base64.b64encode(bytes.fromhex(SMALL_ORDER[0]) + bytes(32)).decode()
    with pytest.raises(ProtocolError, match="small-order"):
        verify(b64(SMALL_ORDER[0]), b'{"any":"body"}', forged)


def test_a_signature_with_s_plus_l_is_refused():
    key = Ed25519PrivateKey.generate()
    body = b'{"walletAddress":"0x"}'
    raw = base64.b64decode(sign(key, body))
    s = int.from_bytes(raw[32:], "little") + ed25519.L
    malleated = base64.b64encode(raw[:32] + s.to_bytes(32, "little")).decode()
    with pytest.raises(ProtocolError, match="S is not reduced"):
        verify(encode_public_key(key), body, malleated)
    verify(encode_public_key(key), body, sign(key, body))
