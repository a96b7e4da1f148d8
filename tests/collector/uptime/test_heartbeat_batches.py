"""POST /heartbeats: a backlog in one request, each heartbeat judged exactly as POST
/heartbeat would judge it, and a malformed envelope that changes nothing."""

import base64
import json
import os

import httpx
import pytest

from collector.uptime.heartbeats import MAX_BATCH
from protocol.heartbeat import SIGNATURE_HEADER
from protocol.times import utcnow
from tests.collector.uptime.test_heartbeats import assert_server_time, snapshot
from tests.factories import FakeWorker, minutes_ago


def entry(worker: FakeWorker, ts=None, **extra) -> dict:
    """A batch entry: the heartbeat's exact JSON text and its signature."""
    body, headers = worker.signed(worker.heartbeat_body(ts, **extra))
    return {"body": body.decode(), "signature": next(iter(headers.values()))}


def send(client, entries: list):
    return client.post("/heartbeats", json={"heartbeats": entries})


def test_each_heartbeat_gets_the_answer_the_single_route_would_give(client, worker, dbconn):
    stranger = FakeWorker()
    forged = {
        **entry(worker, minutes_ago(9)),
        "signature": base64.b64encode(os.urandom(64)).decode(),
    }
    first = entry(worker, minutes_ago(10))
    entries = [
        first,  # accepted
        first,  # the same again: stored
        forged,  # bad signature
        entry(stranger, minutes_ago(8)),  # not enrolled
        entry(worker, minutes_ago(60 * 25)),  # beyond the backfill
        {"body": "{", "signature": "c2ln"},  # not JSON
        entry(worker, minutes_ago(5)),  # accepted
    ]
    response = send(client, entries)
    assert response.status_code == 200, response.json
    results = response.json["results"]
    assert [r["status"] for r in results] == [200, 409, 401, 404, 422, 400, 200]
    assert results[0]["accepted"] is True and results[0]["action"] == "opened"
    assert results[1]["stored"] is True
    assert results[6]["action"] == "extended"
    assert all(r["error"] for r in results[1:6])
    window = client.get(f"/workers/{worker.wallet}").json["openWindow"]
    assert (window["startTime"], window["endTime"]) == (
        json.loads(entries[0]["body"])["timestamp"],
        json.loads(entries[6]["body"])["timestamp"],
    )
    assert "serverTime" in response.json


def test_a_batch_gives_the_answers_and_windows_of_the_same_heartbeats_sent_one_by_one(
    client, history
):
    one_by_one, batched = FakeWorker(), FakeWorker()
    for w in (one_by_one, batched):
        assert w.enroll(client).status_code == 201
        history.known(w.wallet)
    # Two bursts with a silence longer than the gap (30 min) between them, a replay, an
    # older heartbeat in no window, one with another key's signature and one not JSON.
    times = [minutes_ago(m) for m in (120, 115, 110, 60, 55, 50)]
    times.insert(5, times[4])
    times.insert(6, minutes_ago(90))

    def entries(w: FakeWorker) -> list[dict]:
        made = [entry(w, ts) for ts in times]
        made.insert(4, {**entry(w, minutes_ago(58)), "signature": entry(FakeWorker())["signature"]})
        made.insert(2, {"body": "{", "signature": made[0]["signature"]})
        return made

    singles = []
    for sent in entries(one_by_one):
        headers = {SIGNATURE_HEADER: sent["signature"], "Content-Type": "application/json"}
        answer = client.post("/heartbeat", data=sent["body"].encode(), headers=headers)
        fields = answer.json
        del fields["serverTime"]  # the batch tells its time once, beside the results
        singles.append({"status": answer.status_code, **fields})
    results = send(client, entries(batched)).json["results"]

    assert [r["status"] for r in results] == [200, 200, 400, 200, 200, 401, 200, 409, 409, 200]
    assert [r.get("stored") for r in results if r["status"] == 409] == [True, False]
    # Field for field what the single route answered, the receipts aside: each names its
    # wallet, its heartbeat's hash and the collector's time (tests/collector/uptime/
    # test_receipts.py checks them). The same heartbeats have one.
    assert ["receipt" in r for r in results] == ["receipt" in r for r in singles]
    assert [r["receipt"]["body"]["heartbeatTime"] for r in results if "receipt" in r] == [
        r["receipt"]["body"]["heartbeatTime"] for r in singles if "receipt" in r
    ]
    for answered in (*results, *singles):
        answered.pop("receipt", None)
    assert results == singles

    def uptime(w):
        shown = client.get(f"/workers/{w.wallet}/uptime?from=2000-01-01T00:00:00Z").json
        return shown["records"], shown["openWindow"], shown["totalSeconds"]

    assert uptime(batched) == uptime(one_by_one)
    assert uptime(batched)[0]  # the silence flushed a record


@pytest.mark.parametrize(
    "envelope, message",
    [
        ({"heartbeats": []}, "list of 1 to"),
        ({"heartbeats": "x"}, "list of 1 to"),
        ({}, "heartbeats is required"),
        ({"extra": 1, "heartbeats": [{}]}, "unknown field 'extra'"),
        ({"heartbeats": ["x"]}, "heartbeats[0] must be an object"),
        ({"heartbeats": [{"body": {"walletAddress": "0x"}}]}, "body must be the heartbeat's JSON"),
        ({"heartbeats": [{"body": "{}", "signature": 5}]}, "signature must be a base64 string"),
        ({"heartbeats": [{"body": "{}", "sig": "x"}]}, "unknown field 'sig'"),
    ],
    ids=["empty", "not-list", "missing", "extra", "entry", "body", "signature", "typo"],
)
def test_a_malformed_envelope_is_refused_and_applies_nothing(
    client, worker, dbconn, envelope, message
):
    # A good heartbeat first: it must not be applied when a later entry is malformed.
    if isinstance(envelope.get("heartbeats"), list) and envelope["heartbeats"]:
        envelope = {**envelope, "heartbeats": [entry(worker), *envelope["heartbeats"]]}
        message = message.replace("[0]", "[1]")
    before = snapshot(dbconn)
    started = utcnow()
    response = client.post("/heartbeats", json=envelope)
    assert response.status_code == 400
    assert message in response.json["error"]
    assert_server_time(response.json, started)
    assert snapshot(dbconn) == before


def test_a_batch_holds_at_most_the_limit(client, worker, dbconn):
    body = json.dumps(worker.heartbeat_body(utcnow(), containers=[]))
    full = send(client, [{"body": body, "signature": "x"}] * MAX_BATCH)
    assert full.status_code == 200
    assert [r["status"] for r in full.json["results"]] == [401] * MAX_BATCH
    over = send(client, [{"body": body, "signature": "x"}] * (MAX_BATCH + 1))
    assert over.status_code == 400
    assert f"1 to {MAX_BATCH} heartbeats" in over.json["error"]


def test_with_signatures_off_a_batch_needs_no_signatures(make_app, history):
    client = make_app(require_signatures=False).test_client()
    worker = FakeWorker()
    history.known(worker.wallet)
    entries = [{"body": json.dumps(worker.heartbeat_body(minutes_ago(m)))} for m in (2, 1)]
    results = send(client, entries).json["results"]
    assert [r["status"] for r in results] == [200, 200]
    assert results[1]["action"] == "extended"


def test_a_signed_batch_needs_each_signature(client, worker, dbconn):
    body = json.dumps(worker.heartbeat_body(minutes_ago(1)))
    results = send(client, [{"body": body}, {"body": body, "signature": None}]).json["results"]
    assert [r["status"] for r in results] == [401, 401]
    assert "signature" in results[0]["error"]
    assert client.get(f"/workers/{worker.wallet}").json["openWindow"] is None


def test_a_served_collector_takes_a_batch_within_max_body_bytes_and_refuses_a_larger_one(
    serve_collector, history
):
    served = serve_collector(processes=1, max_body_bytes=16 * 1024)
    worker = FakeWorker()
    assert worker.enroll_at(served.url).status_code == 201
    history.known(worker.wallet)
    with httpx.Client(base_url=served.url, timeout=10) as http:
        started = utcnow()
        small = http.post("/heartbeats", json={"heartbeats": [entry(worker, minutes_ago(2))]})
        assert small.status_code == 200
        assert [r["status"] for r in small.json()["results"]] == [200]
        assert_server_time(small.json(), started)

        many = [entry(worker, minutes_ago(1 - i / 1000)) for i in range(100)]
        assert len(json.dumps({"heartbeats": many})) > 16 * 1024
        big = http.post("/heartbeats", json={"heartbeats": many})
        assert big.status_code == 413
        assert "16384 bytes" in big.json()["error"]
        assert_server_time(big.json(), started)
        shown = http.get(f"/workers/{worker.wallet}").json()
    # Only the small batch's heartbeat: the refused one applied nothing.
    assert shown["openWindow"]["startTime"] == shown["openWindow"]["endTime"]


def test_a_batch_is_applied_in_one_transaction(app, client, worker, dbconn):
    """A backlog replayed in one request is one group of the group commit (up to its limit),
    each heartbeat still stepping on the one before it."""
    commits = app.extensions["tassium.commits"]
    before = commits.groups
    response = send(client, [entry(worker, minutes_ago(30 - i)) for i in range(20)])
    assert [r["action"] for r in response.json["results"]] == ["opened"] + ["extended"] * 19
    assert commits.groups - before == 1
