"""protocol/receipts.py: the body the collector signs for a credited heartbeat, written one
way only, read strictly."""

import base64
import dataclasses
import hashlib
import json
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import ProtocolError
from protocol.receipts import (
    MAX_INTEGER,
    Receipt,
    SignedReceipt,
    canonical,
    heartbeat_sha256,
    leaves,
    sign,
)
from protocol.wallets import stellar_address

# RFC 8032's first test key (section 7.1): a fixed key, so a test's signature is always the same.
KEY = Ed25519PrivateKey.from_private_bytes(
    bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
)
WALLET = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2


def receipt(**changes) -> Receipt:
    fields = dict(
        key_id="k1:9f86d081884c7d65",
        wallet=WALLET,
        # Microseconds, as an agent's clock gives them: the receipt keeps milliseconds.
        heartbeat_time=datetime(2026, 11, 24, 21, 5, 0, 123456, tzinfo=UTC),
        heartbeat_sha256=ABC_SHA256,
        window_start=datetime(2026, 11, 24, 21, 0, tzinfo=UTC),
        window_end=datetime(2026, 11, 24, 21, 5, 0, 123456, tzinfo=UTC),
        counted_millis=60_000,
        credits_millis=1_250,
        collector_time=datetime(2026, 11, 24, 21, 5, 0, 456789, tzinfo=UTC),
    )
    fields.update(changes)
    return Receipt(**fields)


# Written out by hand from docs/receipts.md's rule, not by the code under test.
GOLDEN = (
    b'{"collectorTime":"2026-11-24T21:05:00.456Z","countedMillis":60000,"creditsMillis":1250,'
    b'"heartbeatSha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",'
    b'"heartbeatTime":"2026-11-24T21:05:00.123Z","keyId":"k1:9f86d081884c7d65",'
    b'"type":"tassium-receipt","v":1,"walletAddress":"0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",'
    b'"windowEnd":"2026-11-24T21:05:00.123Z","windowStart":"2026-11-24T21:00:00.000Z"}'
)
GOLDEN_BODY = {
    "type": "tassium-receipt",
    "v": 1,
    "keyId": "k1:9f86d081884c7d65",
    "walletAddress": WALLET,
    "heartbeatTime": "2026-11-24T21:05:00.123Z",
    "heartbeatSha256": ABC_SHA256,
    "windowStart": "2026-11-24T21:00:00.000Z",
    "windowEnd": "2026-11-24T21:05:00.123Z",
    "countedMillis": 60000,
    "creditsMillis": 1250,
    "collectorTime": "2026-11-24T21:05:00.456Z",
}


def wire(**changes) -> dict:
    """The golden receipt's wire form, signed, with ``changes`` made to its body after."""
    document = sign(receipt(), KEY).to_json()
    document["body"].update(changes)
    return document


# --- the canonical bytes ----------------------------------------------------------------------


def test_the_canonical_bytes_are_the_golden_vector():
    assert canonical(receipt()) == GOLDEN


def test_the_documented_format_shows_the_golden_vector():
    # What another program's author reads is what the code writes.
    documented = (Path(__file__).parents[2] / "docs" / "receipts.md").read_text(encoding="utf-8")
    assert GOLDEN.decode() in documented


def test_the_canonical_bytes_are_sorted_compact_json_of_the_body():
    # What another program would write: any JSON library, keys sorted, no whitespace.
    assert canonical(receipt()) == json.dumps(
        GOLDEN_BODY, sort_keys=True, separators=(",", ":")
    ).encode("utf-8")
    assert receipt().body() == GOLDEN_BODY


@pytest.mark.parametrize("seed", range(40))
def test_the_written_out_bytes_are_json_dumps_for_any_receipt(seed):
    # canonical() writes its bytes by hand, for speed: they stay what json.dumps writes.
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(10**14))
    end = start + timedelta(microseconds=rng.randrange(10**10))
    made = receipt(
        key_id=rng.choice(["a", "k1:9f86d081884c7d65", "0123456789abcdef", "x.y_z-" * 10]),
        wallet=rng.choice([WALLET, stellar_address(rng.randbytes(32))]),
        heartbeat_time=end,
        heartbeat_sha256=rng.randbytes(32).hex(),
        window_start=start,
        window_end=end,
        counted_millis=rng.choice([0, (end - start) // timedelta(milliseconds=1)]),
        credits_millis=rng.choice([0, 1, MAX_INTEGER, rng.randrange(10**9)]),
        collector_time=end + timedelta(microseconds=rng.randrange(-(10**7), 10**7)),
    )
    body = made.body()
    assert canonical(made) == json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert Receipt.from_body(json.loads(canonical(made))) == made


def test_the_heartbeat_hash_is_sha256_of_the_exact_body_in_hex():
    assert heartbeat_sha256(b"abc") == ABC_SHA256
    body = b'{"walletAddress":"0x00","timestamp":"2026-11-24T21:00:00Z"}'
    assert heartbeat_sha256(body) == hashlib.sha256(body).hexdigest()


def test_times_are_kept_in_utc_to_the_millisecond():
    there = timezone(timedelta(hours=2))
    made = receipt(collector_time=datetime(2026, 11, 24, 23, 5, 0, 456999, tzinfo=there))
    assert made.collector_time == datetime(2026, 11, 24, 21, 5, 0, 456000, tzinfo=UTC)
    assert made == receipt()
    assert canonical(made) == GOLDEN


@pytest.mark.parametrize(
    "change",
    [
        {"key_id": "k1:9f86d081884c7d66"},
        {"wallet": "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaee"},
        {"heartbeat_time": datetime(2026, 11, 24, 21, 5, 0, 122000, tzinfo=UTC)},
        {"heartbeat_sha256": ABC_SHA256[:-1] + "e"},
        {"window_start": datetime(2026, 11, 24, 21, 0, 0, 1000, tzinfo=UTC)},
        {
            "window_end": datetime(2026, 11, 24, 21, 5, 0, 124000, tzinfo=UTC),
        },
        {"counted_millis": 60_001},
        {"credits_millis": 1_251},
        {"collector_time": datetime(2026, 11, 24, 21, 5, 0, 457000, tzinfo=UTC)},
    ],
    ids=lambda change: next(iter(change)),
)
def test_a_change_to_any_field_changes_the_canonical_bytes(change):
    assert canonical(receipt(**change)) != GOLDEN


# --- the wire form ----------------------------------------------------------------------------


def test_a_signed_receipt_round_trips_through_its_wire_form():
    signed = sign(receipt(), KEY)
    text = json.dumps(signed.to_json())
    assert SignedReceipt.from_json(json.loads(text)) == signed
    assert set(signed.to_json()) == {"body", "signature"}
    assert base64.b64decode(signed.to_json()["signature"]) == signed.signature


def test_the_signature_is_over_the_canonical_bytes():
    signed = sign(receipt(), KEY)
    assert signed.message() == GOLDEN
    KEY.public_key().verify(signed.signature, GOLDEN)  # raises if not


def test_a_body_read_back_writes_the_bytes_that_were_signed():
    signed = SignedReceipt.from_json(wire())
    assert (
        signed.message()
        == json.dumps(wire()["body"], sort_keys=True, separators=(",", ":")).encode()
    )


def test_a_stellar_wallet_round_trips():
    stellar = stellar_address(bytes(range(32)))
    signed = sign(receipt(wallet=stellar), KEY)
    assert SignedReceipt.from_json(signed.to_json()).receipt.wallet == stellar


def test_no_single_changed_byte_of_a_receipt_passes_as_the_signed_one():
    # A receipt as an owner's file holds it: every byte changed in turn is refused, by the
    # reader or by the signature over the bytes it reads back.
    text = json.dumps(sign(receipt(), KEY).to_json()).encode()
    public = KEY.public_key()
    for at in range(len(text)):
        changed = text[:at] + bytes([text[at] ^ 0x01]) + text[at + 1 :]
        try:
            signed = SignedReceipt.from_json(json.loads(changed))
        except (ProtocolError, ValueError):  # json's errors are ValueErrors too
            continue
        with pytest.raises(InvalidSignature):
            public.verify(signed.signature, signed.message())


# --- what is refused, and the sentence that says why ----------------------------------------


@pytest.mark.parametrize(
    ("version", "sentence"),
    [
        (2, "receipt version 2 is not one this program reads (it reads version 1)"),
        (0, "receipt version 0 is not one"),
        ("1", "receipt version '1' is not one"),
        (1.0, "receipt version 1.0 is not one"),
        (True, "receipt version True is not one"),
        (None, "receipt version None is not one"),
    ],
)
def test_an_unknown_version_is_refused(version, sentence):
    with pytest.raises(ProtocolError) as refused:
        SignedReceipt.from_json(wire(v=version))
    assert str(refused.value).startswith(sentence)


def test_a_later_version_is_refused_for_its_version_whatever_its_fields():
    document = wire(v=2, somethingNew=True)
    del document["body"]["creditsMillis"]
    with pytest.raises(ProtocolError, match="receipt version 2 is not one"):
        SignedReceipt.from_json(document)


def test_a_body_without_a_version_is_refused():
    document = wire()
    del document["body"]["v"]
    with pytest.raises(ProtocolError, match=r"receipt body has no v \(its version\)"):
        SignedReceipt.from_json(document)


def test_a_receipt_cannot_be_made_with_another_version():
    with pytest.raises(ProtocolError, match="receipt version 2 is not one"):
        receipt(version=2)


BAD_FIELDS = [
    ("type", "tassium-heartbeat", "receipt type must be 'tassium-receipt'"),
    ("keyId", "", "receipt keyId must be 1 to 64 letters"),
    ("keyId", "k 1", "receipt keyId must be 1 to 64 letters"),
    ("keyId", "k" * 65, "receipt keyId must be 1 to 64 letters"),
    ("keyId", 'k"1', "receipt keyId must be 1 to 64 letters"),
    ("keyId", 7, "receipt keyId must be a string"),
    ("walletAddress", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "must be written lower-case"),
    ("walletAddress", "0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED", "must be written lower-case"),
    ("walletAddress", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD", "fails its EIP-55 checksum"),
    ("walletAddress", "0x1234", "receipt walletAddress: wallet address must be 0x followed"),
    ("walletAddress", "G" + "A" * 55, "receipt walletAddress: wallet address fails its Stellar"),
    ("walletAddress", None, "receipt walletAddress must be a string"),
    ("heartbeatSha256", ABC_SHA256.upper(), "receipt heartbeatSha256 must be 64 lower-case hex"),
    ("heartbeatSha256", ABC_SHA256[:-1], "receipt heartbeatSha256 must be 64 lower-case hex"),
    ("heartbeatSha256", 1, "receipt heartbeatSha256 must be a string"),
    ("heartbeatTime", "2026-11-24T21:05:00Z", "receipt heartbeatTime must be written like"),
    ("heartbeatTime", "2026-11-24T21:05:00.123456Z", "receipt heartbeatTime must be written"),
    ("heartbeatTime", "2026-11-24T21:05:00.123z", "receipt heartbeatTime must be written like"),
    ("heartbeatTime", "2026-11-24T23:05:00.123+02:00", "receipt heartbeatTime must be written"),
    ("windowStart", "2026-11-24 21:00:00.000Z", "receipt windowStart must be an RFC 3339 time"),
    ("windowEnd", "2026-02-30T21:00:00.000Z", "receipt windowEnd is not a real date and time"),
    ("collectorTime", 1764018300, "receipt collectorTime must be an RFC 3339 time"),
    ("collectorTime", "0001-01-01T00:00:00.000Z", "receipt collectorTime must lie from"),
    ("countedMillis", -1, "receipt countedMillis must be an integer from 0 to 9007199254740991"),
    ("countedMillis", 1.5, "receipt countedMillis must be an integer from 0"),
    ("countedMillis", 60000.0, "receipt countedMillis must be an integer from 0"),
    ("countedMillis", "60000", "receipt countedMillis must be an integer from 0"),
    ("countedMillis", True, "receipt countedMillis must be an integer from 0"),
    ("creditsMillis", MAX_INTEGER + 1, "receipt creditsMillis must be an integer from 0"),
    ("creditsMillis", None, "receipt creditsMillis must be an integer from 0"),
    # Each value well formed, together impossible for a heartbeat the collector credited.
    ("countedMillis", 300_124, "receipt countedMillis must be no more than its window spans"),
    ("heartbeatTime", "2026-11-24T20:59:59.999Z", "receipt heartbeatTime must lie from its"),
    ("windowStart", "2026-11-24T21:05:00.124Z", "receipt heartbeatTime must lie from its"),
]


@pytest.mark.parametrize(("name", "value", "sentence"), BAD_FIELDS)
def test_a_bad_field_is_refused_by_name(name, value, sentence):
    with pytest.raises(ProtocolError) as refused:
        SignedReceipt.from_json(wire(**{name: value}))
    assert sentence in str(refused.value)


def test_a_count_as_long_as_the_window_is_taken():
    # The first heartbeat after the window opened counts the whole span: the bound's edge.
    body = wire(countedMillis=300_123)["body"]
    assert Receipt.from_body(body).counted_millis == 300_123


@pytest.mark.parametrize("name", sorted(GOLDEN_BODY.keys() - {"v", "type"}))
def test_a_missing_field_is_refused_by_name(name):
    document = wire()
    del document["body"][name]
    with pytest.raises(ProtocolError, match=f"^receipt body has no {name}$"):
        SignedReceipt.from_json(document)


def test_a_field_the_version_has_not_is_refused_by_name():
    # It would not be covered by the signature over the canonical bytes read back.
    with pytest.raises(ProtocolError, match="has not: hours, note$"):
        SignedReceipt.from_json(wire(note="paid", hours=24))


@pytest.mark.parametrize(
    ("document", "sentence"),
    [
        ([], "a receipt must be a JSON object with body and signature"),
        ({"signature": "x"}, "receipt has no body"),
        ({"body": GOLDEN_BODY}, "receipt has no signature"),
        ({"body": GOLDEN_BODY, "signature": "", "extra": 1}, "not extra"),
        ({"body": [], "signature": ""}, "receipt body must be a JSON object"),
    ],
)
def test_a_malformed_wire_form_is_refused(document, sentence):
    with pytest.raises(ProtocolError, match=sentence):
        SignedReceipt.from_json(document)


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("not base64!", id="not-base64"),
        pytest.param(base64.b64encode(bytes(63)).decode(), id="63-bytes"),
        pytest.param(base64.b64encode(bytes(65)).decode(), id="65-bytes"),
        pytest.param(base64.b64encode(bytes(64)).decode().rstrip("="), id="unpadded"),
        # The last character's unused bits set: it decodes to the same 64 bytes.
        pytest.param(base64.b64encode(bytes(64)).decode()[:-3] + "B==", id="non-canonical"),
        pytest.param(base64.urlsafe_b64encode(b"\xff" * 64).decode(), id="url-safe-alphabet"),
        pytest.param(None, id="null"),
    ],
)
def test_a_bad_signature_is_refused(signature):
    document = wire()
    document["signature"] = signature
    with pytest.raises(ProtocolError, match="receipt signature must be the standard base64 of 64"):
        SignedReceipt.from_json(document)


def test_a_receipt_cannot_be_made_with_a_naive_time_or_a_short_signature():
    with pytest.raises(ProtocolError, match="receipt collectorTime must be an aware datetime"):
        receipt(collector_time=datetime(2026, 11, 24, 21, 5))
    with pytest.raises(ProtocolError, match="receipt signature must be 64 bytes"):
        SignedReceipt(receipt(), bytes(32))


# --- the Merkle leaves ------------------------------------------------------------------------


def test_a_leaf_is_the_canonical_body_then_the_raw_signature():
    signed = sign(receipt(), KEY)
    assert signed.leaf() == GOLDEN + signed.signature


def test_leaves_are_ordered_by_heartbeat_time_and_each_kept_once():
    start = datetime(2026, 11, 1, tzinfo=UTC)
    made = [
        sign(
            receipt(
                heartbeat_time=start + timedelta(minutes=i),
                window_start=start,
                window_end=start + timedelta(minutes=i),
                counted_millis=60_000 if i else 0,
            ),
            KEY,
        )
        for i in range(5)
    ]
    shuffled = [made[3], made[0], made[4], made[1], made[3], made[2]]
    assert leaves(shuffled) == [r.leaf() for r in made]
    assert leaves([]) == []


def test_two_receipts_for_one_instant_still_have_one_order():
    one, other = sign(receipt(), KEY), sign(receipt(credits_millis=1), KEY)
    assert leaves([one, other]) == leaves([other, one]) == sorted([one.leaf(), other.leaf()])


def test_a_receipt_is_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        receipt().credits_millis = 2  # type: ignore[misc]
