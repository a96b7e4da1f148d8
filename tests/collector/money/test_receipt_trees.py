"""A payout's export carries, per worker, the Merkle root of the worker's receipts over the
period (issue 24): recomputed here from the receipts the agent was answered with, the path
of a receipt shown to be in it, the root pinned in the recorded payment, and the receipts
still proving the payout after the records are deleted."""

from datetime import timedelta

import pytest

from collector.store.models import OpenWindow, UptimeRecord
from protocol import merkle
from protocol.receipt_files import latest_per_window
from protocol.receipts import SignedReceipt, leaves
from protocol.times import format_timestamp, utcnow
from tests.conftest import operator_client
from tests.factories import FakeWorker, minutes_ago

HOUR = timedelta(hours=1)


@pytest.fixture
def period(history) -> tuple[str, list]:
    """Six hours ago to three hours ago, and the times the worker's heartbeats are sent at:
    a window of three heartbeats, a silence longer than the gap, a window of two."""
    now = utcnow()
    start, end = now - 6 * HOUR, now - 3 * HOUR
    first = [start + timedelta(minutes=m) for m in (10, 15, 20)]
    second = [start + timedelta(minutes=m) for m in (100, 105)]
    return f"{format_timestamp(start)}/{format_timestamp(end)}", first + second


def send_history(client, worker: FakeWorker, times) -> list[SignedReceipt]:
    answers = [worker.beat(client, ts).get_json() for ts in times]
    assert [a["action"] for a in answers] == [
        "opened",
        "extended",
        "extended",
        "flushed",
        "extended",
    ]
    return [SignedReceipt.from_json(a["receipt"]) for a in answers]


def root_of(receipts: list[SignedReceipt]) -> str:
    """An auditor's recomputation: the agent's kept receipts (the last of each window), as
    RFC 6962 leaves."""
    return merkle.root(leaves(latest_per_window(receipts))).hex()


def test_the_export_carries_each_workers_root_as_recomputed_from_its_receipts(
    client, operator, worker, period, history
):
    label, times = period
    receipts = send_history(client, worker, times)
    # A second worker with one window: its own root, not the first one's.
    other = FakeWorker()
    assert other.enroll(client).status_code == 201
    history.known(other.wallet)
    theirs = [
        SignedReceipt.from_json(other.beat(client, ts).get_json()["receipt"]) for ts in times[:2]
    ]

    export = operator.get("/payouts/export", query_string={"period": label, "budget": "1000"})

    assert export.status_code == 200, export.json
    shares = {s["walletAddress"]: s for s in export.json["shares"]}
    assert shares[worker.wallet]["receiptsRoot"] == root_of(receipts)
    assert shares[worker.wallet]["receiptCount"] == 2
    assert shares[other.wallet]["receiptsRoot"] == root_of(theirs)
    assert shares[other.wallet]["receiptCount"] == 1
    as_csv = operator.get("/payouts/export.csv", query_string={"period": label, "budget": "1000"})
    row = next(line for line in as_csv.get_data(as_text=True).splitlines() if worker.wallet in line)
    assert row.endswith(f",{root_of(receipts)},2")


def test_an_owner_shows_their_receipt_is_in_the_tree_with_its_audit_path(
    client, operator, worker, period
):
    label, times = period
    receipts = send_history(client, worker, times)
    route = f"/reports/workers/{worker.wallet}/receipts"
    last_of_first_window = receipts[2]

    tree = operator.get(
        route,
        query_string={
            "period": label,
            "heartbeatSha256": last_of_first_window.receipt.heartbeat_sha256,
        },
    )

    assert tree.status_code == 200, tree.json
    assert tree.json["root"] == root_of(receipts)
    assert [SignedReceipt.from_json(r) for r in tree.json["receipts"]] == latest_per_window(
        receipts
    )
    proof = tree.json["proof"]
    path = [bytes.fromhex(p) for p in proof["path"]]
    root = bytes.fromhex(tree.json["root"])
    assert merkle.verify(last_of_first_window.leaf(), proof["index"], proof["size"], path, root)
    # The same path does not prove another receipt.
    assert not merkle.verify(receipts[4].leaf(), proof["index"], proof["size"], path, root)

    # An earlier receipt of a window is valid but is not a leaf: the window's last stands for it.
    earlier = operator.get(
        route,
        query_string={"period": label, "heartbeatSha256": receipts[0].receipt.heartbeat_sha256},
    )
    assert earlier.status_code == 404
    assert "window's last receipt stands for it" in earlier.json["error"]


def test_the_tree_is_the_owners_or_the_operators_only(client, worker, period):
    label, times = period
    send_history(client, worker, times)
    answer = client.get(
        f"/reports/workers/{worker.wallet}/receipts", query_string={"period": label}
    )
    assert answer.status_code == 401


def test_a_recorded_payout_pins_each_root_and_the_receipts_prove_it_after_records_are_lost(
    client, worker, period, make_app, dbconn
):
    label, times = period
    receipts = send_history(client, worker, times)
    # The period is final once max_backfill and the gap have passed since its end.
    settled = operator_client(make_app(max_backfill=60, gap=60))
    recorded = settled.post("/payouts", json={"period": label, "budget": "1000"})

    assert recorded.status_code == 201, recorded.json
    [payment] = recorded.json["payments"]
    assert (payment["receiptsRoot"], payment["receiptCount"]) == (root_of(receipts), 2)
    route = f"/reports/workers/{worker.wallet}/receipts"
    assert settled.get(route, query_string={"period": label}).json["recordedRoot"] == root_of(
        receipts
    )

    # The records are deleted: the collector's own tree is empty now, but the receipts the
    # agent kept still recompute the root the payout recorded.
    UptimeRecord.delete().where(UptimeRecord.worker == worker.wallet).execute()
    OpenWindow.delete().where(OpenWindow.worker == worker.wallet).execute()
    now_tree = settled.get(route, query_string={"period": label}).json
    assert now_tree["receipts"] == [] and now_tree["root"] == merkle.EMPTY_ROOT.hex()
    assert now_tree["recordedRoot"] == root_of(receipts)


def test_a_bad_heartbeat_hash_is_refused_with_a_sentence(operator, worker, period):
    label, _ = period
    answer = operator.get(
        f"/reports/workers/{worker.wallet}/receipts",
        query_string={"period": label, "heartbeatSha256": "XYZ"},
    )
    assert answer.status_code == 400
    assert "64 lower-case hex digits" in answer.json["error"]


def test_no_receipts_is_the_empty_tree(operator, worker):
    answer = operator.get(
        f"/reports/workers/{worker.wallet}/receipts",
        query_string={
            "period": f"{format_timestamp(minutes_ago(60))}/{format_timestamp(utcnow())}"
        },
    )
    assert answer.status_code == 200
    assert (answer.json["receipts"], answer.json["root"]) == ([], merkle.EMPTY_ROOT.hex())
