"""Receipts on heartbeat answers (issue 24, item 2): every credited heartbeat is answered with
the collector's signature over a canonical body naming the wallet, the heartbeat (its time
and the SHA-256 of its exact bytes), the window it moved and what it counted and earned;
checkable by anyone with the key published at /.well-known/tassium-collector.json, across a
rotation of that key. No receipt for a refusal or a heartbeat stored as evidence only."""

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from collector.identity.collector_key import EXTENSION, WELL_KNOWN_PATH, CollectorKey
from collector.identity.signatures import verify
from collector.store.models import CollectorKeyRecord, OpenWindow
from collector.uptime.receipts import ReceiptSigner
from protocol import ProtocolError
from protocol.heartbeat import Heartbeat
from protocol.receipts import Receipt, SignedReceipt, canonical
from protocol.times import format_millis, parse_timestamp, utcnow
from tests.factories import FakeWorker, minutes_ago


def send(client, worker: FakeWorker, ts) -> tuple[bytes, dict, int]:
    """A heartbeat's exact bytes, the answer to them and its status."""
    raw, headers = worker.signed(worker.heartbeat_body(ts))
    answer = client.post("/heartbeat", data=raw, headers=headers)
    return raw, answer.get_json(), answer.status_code


def published(client) -> dict[str, str]:
    """The collector's public keys by id, as anyone reads them."""
    document = client.get(WELL_KNOWN_PATH).get_json()
    return {k["keyId"]: k["publicKey"] for k in document["keys"]}


def message(body: dict) -> bytes:
    """The signed bytes, as another program writes them: sorted keys, no whitespace."""
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def check(receipt: dict, keys: dict[str, str], wallet: str) -> dict:
    """What a checker does: the receipt is this wallet's and verifies with the published key
    its keyId names (ProtocolError otherwise). Returns its body."""
    body = receipt["body"]
    if body["walletAddress"] != wallet:
        raise ProtocolError("the receipt is another wallet's")
    verify(keys[body["keyId"]], message(body), receipt["signature"])
    return body


def test_a_credited_heartbeat_is_answered_with_a_receipt_that_verifies(app, client, worker):
    now = utcnow()
    first_raw, first, _ = send(client, worker, minutes_ago(10, now))
    raw, answer, status = send(client, worker, minutes_ago(5, now))

    assert status == 200 and answer["action"] == "extended" and answer["credited"] is True
    keys = published(client)
    body = check(answer["receipt"], keys, worker.wallet)
    assert body["keyId"] == app.extensions[EXTENSION].key_id
    assert body["type"] == "tassium-receipt" and body["v"] == 1
    sent = json.loads(raw)
    assert body["heartbeatSha256"] == hashlib.sha256(raw).hexdigest()
    assert parse_timestamp(body["heartbeatTime"], "t") == parse_timestamp(
        format_millis(parse_timestamp(sent["timestamp"], "t")), "t"
    )
    window = answer["openWindow"]
    for field, shown in (("windowStart", "startTime"), ("windowEnd", "endTime")):
        assert format_millis(parse_timestamp(window[shown], "t")) == body[field]
    assert body["windowEnd"] == body["heartbeatTime"]
    assert body["countedMillis"] == 5 * 60 * 1000
    assert body["creditsMillis"] / 1000 == answer["creditsEarned"]
    collector_time = parse_timestamp(body["collectorTime"], "t")
    assert abs((utcnow() - collector_time).total_seconds()) < 60
    # The protocol reads it back as the very bytes that were signed.
    signed = SignedReceipt.from_json(answer["receipt"])
    assert signed.message() == message(body)
    verify(keys[body["keyId"]], signed.message(), answer["receipt"]["signature"])

    # The first heartbeat opened the window: a receipt too, for nothing counted yet.
    opened = check(first["receipt"], keys, worker.wallet)
    assert first["action"] == "opened"
    assert opened["heartbeatSha256"] == hashlib.sha256(first_raw).hexdigest()
    assert (opened["countedMillis"], opened["creditsMillis"]) == (0, 0)
    assert opened["windowStart"] == opened["windowEnd"] == body["windowStart"]


def test_a_duplicate_and_an_evidence_only_heartbeat_have_no_receipt(client, worker):
    ts = minutes_ago(5)
    raw, headers = worker.signed(worker.heartbeat_body(ts))
    assert "receipt" in client.post("/heartbeat", data=raw, headers=headers).get_json()
    duplicate = client.post("/heartbeat", data=raw, headers=headers)
    assert duplicate.status_code == 409 and "receipt" not in duplicate.get_json()

    # Enrolled a moment ago: a heartbeat stamped before that is stored as evidence only.
    newcomer = FakeWorker()
    assert newcomer.enroll(client).status_code == 201
    _, evidence, status = send(client, newcomer, minutes_ago(10))
    assert status == 200 and evidence["credited"] is False
    assert "receipt" not in evidence

    unknown = FakeWorker()
    _, refused, status = send(client, unknown, minutes_ago(1))
    assert status == 404 and "receipt" not in refused


def test_one_byte_changed_in_the_body_or_the_signature_does_not_verify(client, worker):
    _, answer, _ = send(client, worker, minutes_ago(5))
    receipt, keys = answer["receipt"], published(client)
    check(receipt, keys, worker.wallet)
    key = keys[receipt["body"]["keyId"]]
    signed = message(receipt["body"])

    for at in (0, len(signed) // 2, len(signed) - 1):
        changed = bytearray(signed)
        changed[at] ^= 0x01
        with pytest.raises(ProtocolError):
            verify(key, bytes(changed), receipt["signature"])
    raw_signature = bytearray(base64.b64decode(receipt["signature"]))
    for at in (0, 31, 63):
        changed = bytearray(raw_signature)
        changed[at] ^= 0x01
        with pytest.raises(ProtocolError):
            verify(key, signed, base64.b64encode(bytes(changed)).decode())


def test_another_wallets_receipt_does_not_verify_as_this_ones(client, worker, history):
    other = FakeWorker()
    assert other.enroll(client).status_code == 201
    history.known(other.wallet)
    ts = minutes_ago(5)
    _, mine, _ = send(client, worker, ts)
    _, theirs, _ = send(client, other, ts)
    keys = published(client)
    check(theirs["receipt"], keys, other.wallet)
    with pytest.raises(ProtocolError):
        check(theirs["receipt"], keys, worker.wallet)
    # Claimed as this wallet's, it no longer verifies.
    claimed = {**theirs["receipt"]["body"], "walletAddress": worker.wallet}
    with pytest.raises(ProtocolError):
        verify(keys[claimed["keyId"]], message(claimed), theirs["receipt"]["signature"])
    assert mine["receipt"]["signature"] != theirs["receipt"]["signature"]


def test_a_batch_answers_one_receipt_per_credited_heartbeat(client, worker):
    now = utcnow()
    times = [minutes_ago(m, now) for m in (20, 15, 10, 5)]
    entries = []
    for ts in times:
        raw, headers = worker.signed(worker.heartbeat_body(ts))
        entries.append({"body": raw.decode(), "signature": next(iter(headers.values()))})
    entries.insert(2, dict(entries[1]))  # a duplicate: refused, no receipt
    results = client.post("/heartbeats", json={"heartbeats": entries}).get_json()["results"]

    assert [r["status"] for r in results] == [200, 200, 409, 200, 200]
    assert ["receipt" in r for r in results] == [True, True, False, True, True]
    keys = published(client)
    for entry, result in zip(entries, results, strict=True):
        if result["status"] != 200:
            continue
        body = check(result["receipt"], keys, worker.wallet)
        assert body["heartbeatSha256"] == hashlib.sha256(entry["body"].encode()).hexdigest()
        assert body["heartbeatTime"] == format_millis(
            parse_timestamp(json.loads(entry["body"])["timestamp"], "t")
        )
        assert body["windowEnd"] == body["heartbeatTime"]
        assert body["creditsMillis"] / 1000 == result["creditsEarned"]
    counted = [r["receipt"]["body"]["countedMillis"] for r in results if r["status"] == 200]
    assert counted == [0, 5 * 60 * 1000, 5 * 60 * 1000, 5 * 60 * 1000]
    starts = {r["receipt"]["body"]["windowStart"] for r in results if r["status"] == 200}
    assert starts == {format_millis(times[0])}


def test_after_a_rotation_new_receipts_are_the_new_keys_and_old_ones_still_verify(
    app, client, worker, make_app, runner
):
    old_key = app.extensions[EXTENSION].key_id
    _, before, _ = send(client, worker, minutes_ago(10))
    assert before["receipt"]["body"]["keyId"] == old_key

    assert runner("receipts-key", "rotate").exit_code == 0
    rotated = make_app().test_client()
    _, after, status = send(rotated, worker, minutes_ago(5))

    assert status == 200
    new_key = after["receipt"]["body"]["keyId"]
    assert new_key != old_key
    document = rotated.get(WELL_KNOWN_PATH).get_json()
    assert document["current"] == new_key
    keys = published(rotated)
    check(before["receipt"], keys, worker.wallet)
    check(after["receipt"], keys, worker.wallet)
    # Each verifies with its own key only.
    with pytest.raises(ProtocolError):
        verify(keys[new_key], message(before["receipt"]["body"]), before["receipt"]["signature"])
    with pytest.raises(ProtocolError):
        verify(keys[old_key], message(after["receipt"]["body"]), after["receipt"]["signature"])
    # The old key is published as valid until the rotation, which follows the old receipt.
    [retired] = [k for k in document["keys"] if k["keyId"] == old_key]
    assert parse_timestamp(retired["validUntil"], "t") >= parse_timestamp(
        before["receipt"]["body"]["collectorTime"], "t"
    )


def test_a_key_not_recorded_at_start_is_recorded_by_its_first_receipt(make_app, history):
    # As after a start while the database was down: the key is in no row yet.
    client = make_app().test_client()
    CollectorKeyRecord.delete().execute()
    worker = FakeWorker()
    assert worker.enroll(client).status_code == 201
    history.known(worker.wallet)

    receipt = worker.beat(client, minutes_ago(5)).get_json()["receipt"]

    [row] = CollectorKeyRecord.select()
    assert row.key_id == receipt["body"]["keyId"]
    # Valid from the very receipt that recorded it, so the receipt checks.
    assert row.valid_from == parse_timestamp(receipt["body"]["collectorTime"], "t")
    check(receipt, published(client), worker.wallet)


@pytest.mark.parametrize("counted_us", [0, 1_999, 300_000_999])
def test_the_signer_writes_what_a_receipt_reads_back_exactly(counted_us):
    # The signer writes without a Receipt's checks: what it writes must pass them all, and
    # be the very bytes the protocol writes for the same values.
    key = CollectorKey.generate()
    sign = ReceiptSigner(key)
    sign.recorded = True  # no database here
    wallet = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
    end = datetime(2026, 11, 24, 21, 5, 0, 123_456, tzinfo=UTC)
    window = OpenWindow(worker=wallet, start_time=end - timedelta(minutes=5), end_time=end)
    beat = Heartbeat(wallet, end, body_sha256="ab" * 32)
    now = end + timedelta(seconds=1, microseconds=789)

    raw = sign(beat, window, timedelta(microseconds=counted_us), 1250, now)

    signed = SignedReceipt.from_json(json.loads(raw))
    expected = Receipt(
        key_id=key.key_id,
        wallet=wallet,
        heartbeat_time=end,
        heartbeat_sha256="ab" * 32,
        window_start=window.start_time,
        window_end=end,
        counted_millis=counted_us // 1000,
        credits_millis=1250,
        collector_time=now,
    )
    assert signed.receipt == expected
    assert signed.message() == canonical(expected) == message(expected.body())
    verify(key.public_key, signed.message(), json.loads(raw)["signature"])
