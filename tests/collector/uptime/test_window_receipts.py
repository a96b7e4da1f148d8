"""Each window keeps the receipt of its last credited heartbeat, and keeps it when it closes
into an uptime record (issue 24): the last receipt stands for the window, and a payout's
Merkle tree is built over these. Signed in the heartbeat's transaction, so the receipt kept
is the one answered."""

import json
from datetime import timedelta

from collector.store.models import OpenWindow, UptimeRecord
from collector.uptime.windows import sweep
from protocol.receipts import SignedReceipt
from protocol.times import utcnow
from tests.factories import FakeWorker, minutes_ago


def kept(row) -> dict | None:
    return None if row.receipt is None else json.loads(row.receipt)


def window_of(worker: FakeWorker) -> OpenWindow:
    return OpenWindow.get(OpenWindow.worker == worker.wallet)


def records_of(worker: FakeWorker) -> list[UptimeRecord]:
    return list(
        UptimeRecord.select()
        .where(UptimeRecord.worker == worker.wallet)
        .order_by(UptimeRecord.time_from)
    )


def test_the_open_window_keeps_the_receipt_of_its_last_heartbeat(client, worker, dbconn):
    now = utcnow()
    answers = [worker.beat(client, minutes_ago(m, now)).get_json() for m in (15, 10, 5)]

    assert [a["action"] for a in answers] == ["opened", "extended", "extended"]
    assert kept(window_of(worker)) == answers[-1]["receipt"]
    # What is kept reads back as a receipt of the whole window.
    receipt = SignedReceipt.from_json(kept(window_of(worker))).receipt
    opened = SignedReceipt.from_json(answers[0]["receipt"]).receipt
    assert receipt.window_start == opened.window_start
    assert receipt.window_end - receipt.window_start == timedelta(minutes=10)


def test_a_window_closed_by_a_gap_keeps_its_last_receipt_in_its_record(
    client, worker, dbconn, config
):
    now = utcnow()
    first = worker.beat(client, minutes_ago(100, now)).get_json()  # the gap is 30 minutes
    last = worker.beat(client, minutes_ago(99, now)).get_json()
    after_gap = worker.beat(client, minutes_ago(1, now)).get_json()

    assert after_gap["action"] == "flushed"
    [record] = records_of(worker)
    assert kept(record) == last["receipt"] != first["receipt"]
    assert kept(window_of(worker)) == after_gap["receipt"]


def test_the_sweeper_moves_the_receipt_with_the_window(client, worker, dbconn, config):
    now = utcnow()
    worker.beat(client, minutes_ago(100, now))
    last = worker.beat(client, minutes_ago(99, now)).get_json()

    assert sweep(gap=timedelta(seconds=config.gap), now=now) == 1
    [record] = records_of(worker)
    assert kept(record) == last["receipt"]
    assert OpenWindow.select().where(OpenWindow.worker == worker.wallet).count() == 0

    # A heartbeat within the gap of that record reopens it: the new receipt stands for the
    # whole window again, from the record's start.
    again = worker.beat(client, minutes_ago(98, now)).get_json()
    assert again["action"] == "reopened"
    assert records_of(worker) == []
    body = again["receipt"]["body"]
    assert body["windowStart"] == last["receipt"]["body"]["windowStart"]
    assert kept(window_of(worker)) == again["receipt"]


def test_docker_going_down_closes_the_window_with_its_receipt(client, worker, dbconn):
    now = utcnow()
    last = worker.beat(client, minutes_ago(10, now)).get_json()
    down = worker.beat(client, minutes_ago(5, now), agent={"dockerAvailable": False}).get_json()

    assert down["action"] == "docker_unavailable" and "receipt" not in down
    [record] = records_of(worker)
    assert kept(record) == last["receipt"]


def test_an_evidence_only_heartbeat_leaves_the_kept_receipt_alone(client, worker, dbconn):
    ts = minutes_ago(5)
    worker.beat(client, ts - timedelta(minutes=5))
    answer = worker.beat(client, ts).get_json()
    raw, headers = worker.signed(worker.heartbeat_body(ts))
    client.post("/heartbeat", data=raw, headers=headers)  # a duplicate, refused

    assert kept(window_of(worker)) == answer["receipt"]


def test_with_receipts_off_no_heartbeat_gets_one_and_no_window_keeps_one(make_app, history):
    client = make_app(receipts=False).test_client()
    worker = FakeWorker()
    assert worker.enroll(client).status_code == 201
    history.known(worker.wallet)
    answers = [worker.beat(client, minutes_ago(m)).get_json() for m in (10, 5)]

    assert [a["action"] for a in answers] == ["opened", "extended"]
    assert all("receipt" not in a for a in answers)
    assert window_of(worker).receipt is None
