"""Anyone can check (issue 24): ``tassium-collector verify-receipts FILE`` and ``POST
/receipts/verify`` check an owner's receipt file against the collector's published keys and
compare the uptime it proves with the collector's records, hour by hour. Real receipts, from
real heartbeats through the app, on SQLite and PostgreSQL."""

import base64
import dataclasses
import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.cli import cli
from collector.identity.collector_key import EXTENSION, CollectorKey
from collector.store.models import CollectorKeyRecord, OpenWindow, UptimeRecord, Worker
from collector.uptime.receipt_checks import RECEIPTS_LACK, RECORDS_LACK
from protocol.receipt_files import ReceiptFile
from protocol.receipts import SignedReceipt, canonical
from protocol.times import format_millis, format_timestamp, parse_timestamp, utcnow
from tests.conftest import free_port
from tests.factories import FakeWorker, minutes_ago

# Two windows: one closed into a record (silent longer than the 30-minute gap after it),
# 20 minutes long, and the open one, 30 minutes long.
MINUTES = (200, 190, 180, 100, 90, 80, 70)
UPTIME = 50 * 60


def credited(client, worker: FakeWorker, minutes=MINUTES) -> list[SignedReceipt]:
    """The receipts of heartbeats sent that many minutes ago, as the agent keeps them."""
    now = utcnow()
    receipts = []
    for m in minutes:
        answer = worker.beat(client, minutes_ago(m, now))
        assert answer.status_code == 200, answer.get_json()
        receipts.append(SignedReceipt.from_json(answer.get_json()["receipt"]))
    return receipts


def file_of(wallet: str, receipts, period: str | None = None) -> bytes:
    return ReceiptFile(wallet, tuple(receipts), "http://localhost", period).to_bytes()


def verified(client, data: bytes, **query) -> dict:
    answer = client.post("/receipts/verify", data=data, query_string=query)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def written(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "receipts.json"
    path.write_bytes(data)
    return str(path)


def changed(signed: SignedReceipt, **fields) -> SignedReceipt:
    return SignedReceipt(dataclasses.replace(signed.receipt, **fields), signed.signature)


def test_receipts_matching_the_records_pass_through_the_route_and_the_command(
    client, worker, runner, tmp_path
):
    receipts = credited(client, worker)
    data = file_of(worker.wallet, receipts)

    found = verified(client, data)
    assert found["ok"] is True
    assert (found["receipts"], found["valid"], found["refused"]) == (7, 7, [])
    assert found["hours"] == [] and found["workerKnown"] is True
    assert found["provenSeconds"] == pytest.approx(UPTIME, abs=0.01)
    assert found["recordedSeconds"] == pytest.approx(UPTIME, abs=0.01)
    # No period asked for, none in the file: the whole hours the receipts span.
    start = parse_timestamp(found["period"]["from"], "from")
    end = parse_timestamp(found["period"]["to"], "to")
    assert start.minute == start.second == end.minute == end.second == 0
    assert start <= receipts[0].receipt.window_start < receipts[-1].receipt.window_end <= end

    shown = runner("verify-receipts", written(tmp_path, data))
    assert shown.exit_code == 0, shown.output
    assert "Checked 7 receipts: 7 valid (signed with key " in shown.output
    assert "Uptime the valid receipts prove:     50 min" in shown.output
    assert "Every hour agrees." in shown.output
    assert shown.output.splitlines()[-1] == (
        "Result: passed: every receipt is valid and every hour agrees."
    )


def test_a_receipt_with_one_byte_changed_is_refused_and_the_others_still_count(
    client, worker, runner, tmp_path
):
    receipts = credited(client, worker)
    honest = file_of(worker.wallet, receipts)
    # One hex digit of the heartbeat's hash: the file still reads, the signature fails.
    digest = receipts[1].receipt.heartbeat_sha256
    at = honest.index(digest.encode())
    data = bytearray(honest)
    data[at] = ord("0") if digest[0] != "0" else ord("1")

    found = verified(client, bytes(data))
    assert found["ok"] is False
    assert found["valid"] == 6
    assert found["refused"] == [
        {
            "receipt": 2,
            "reason": "the signature does not match its body: it was changed after the "
            "collector signed it",
        }
    ]
    # Not the last of its window: what the window's last receipt proves is untouched.
    assert found["hours"] == []

    shown = runner("verify-receipts", written(tmp_path, bytes(data)))
    assert shown.exit_code == 1
    assert "  receipt 2: the signature does not match its body" in shown.output
    assert shown.output.splitlines()[-1] == "Result: failed: 1 receipt refused."


def test_a_receipt_signed_by_a_key_the_collector_never_published_is_refused(client, worker):
    receipts = credited(client, worker, (30, 20))
    stranger = CollectorKey.generate()
    forged = dataclasses.replace(receipts[1].receipt, key_id=stranger.key_id)
    forged = SignedReceipt(forged, base64.b64decode(stranger.sign(canonical(forged))))
    # And one claiming the collector's own key, signed with another.
    claimed = SignedReceipt(receipts[1].receipt, forged.signature)

    now = utcnow()
    hours = f"{format_timestamp(now - timedelta(hours=2))}/{format_timestamp(now)}"
    found = verified(client, file_of(worker.wallet, [receipts[0], forged, claimed]), period=hours)
    assert [r["receipt"] for r in found["refused"]] == [2, 3]
    assert found["refused"][0]["reason"] == (
        f"signed by key {stranger.key_id}, which this collector never published"
    )
    assert found["refused"][1]["reason"].startswith("the signature does not match its body")
    assert found["keys"] == [receipts[0].receipt.key_id]
    # Only the first receipt stands: it opened the window, and proves no time of it.
    assert found["provenSeconds"] == 0
    assert found["recordedSeconds"] == pytest.approx(600, abs=0.01)
    assert found["hours"] and {h["meaning"] for h in found["hours"]} == {RECEIPTS_LACK}


def test_another_wallets_receipt_is_refused_naming_that_wallet(client, worker, history):
    other = FakeWorker()
    assert other.enroll(client).status_code == 201
    history.known(other.wallet)
    mine = credited(client, worker, (30, 20))
    theirs = credited(client, other, (25, 15))

    found = verified(client, file_of(worker.wallet, [*mine, theirs[1]]))
    assert found["refused"] == [{"receipt": 3, "reason": f"is for another wallet ({other.wallet})"}]
    assert found["provenSeconds"] == pytest.approx(600, abs=0.01)
    assert found["hours"] == []


def test_the_files_wallet_may_be_written_with_its_checksum(client, worker):
    receipts = credited(client, worker, (30, 20))
    found = verified(client, file_of(worker.owner._account.address, receipts))
    assert found["walletAddress"] == worker.wallet
    assert found["ok"] is True


def test_a_worker_whose_records_were_deleted_proves_its_uptime_from_its_receipts(
    client, worker, runner, tmp_path, dbconn
):
    receipts = credited(client, worker)
    UptimeRecord.delete().execute()
    OpenWindow.delete().execute()
    data = file_of(worker.wallet, receipts)

    found = verified(client, data)
    assert found["ok"] is False and found["refused"] == []
    assert found["workerKnown"] is True
    assert found["provenSeconds"] == pytest.approx(UPTIME, abs=0.01)
    assert found["recordedSeconds"] == 0
    assert {h["recordedSeconds"] for h in found["hours"]} == {0}
    assert {h["meaning"] for h in found["hours"]} == {RECORDS_LACK}
    listed = sum(h["provenSeconds"] for h in found["hours"])
    assert listed == pytest.approx(UPTIME, abs=2)  # bar an hour touched by under a second

    shown = runner("verify-receipts", written(tmp_path, data))
    assert shown.exit_code == 1
    lines = shown.output.splitlines()
    assert "Uptime the collector's records show: 0 s" in lines
    header = next(i for i, line in enumerate(lines) if line.startswith("HOUR (UTC)"))
    assert lines[header].split() == ["HOUR", "(UTC)", "RECEIPTS", "PROVE", "RECORDS", "SHOW"] + [
        "MEANING"
    ]
    rows = lines[header + 1 : header + 1 + len(found["hours"])]
    assert all(row.endswith(RECORDS_LACK) and " 0 s " in row for row in rows)

    # The worker itself gone: the receipts still stand alone.
    Worker.get_by_id(worker.wallet).delete_instance(recursive=True)
    alone = verified(client, data)
    assert alone["workerKnown"] is False
    assert alone["provenSeconds"] == found["provenSeconds"]
    assert alone["hours"] == found["hours"]
    shown = runner("verify-receipts", written(tmp_path, data))
    assert f"This collector has no worker {worker.wallet}" in shown.output


def test_records_beyond_the_receipts_are_shown_as_the_owners_receipts_missing(client, worker):
    receipts = credited(client, worker)
    # The file lacks the open window's last two receipts: 20 minutes the records show. Asked
    # over the last four hours: the hours the remaining receipts span may end before them.
    period = f"{format_timestamp(minutes_ago(240))}/{format_timestamp(utcnow())}"
    found = verified(client, file_of(worker.wallet, receipts[:-2]), period=period)
    assert found["refused"] == []
    assert found["recordedSeconds"] - found["provenSeconds"] == pytest.approx(1200, abs=0.01)
    assert {h["meaning"] for h in found["hours"]} == {RECEIPTS_LACK}
    assert all(h["recordedSeconds"] > h["provenSeconds"] for h in found["hours"])


def test_receipts_stay_valid_across_a_rotation_and_a_retired_keys_later_ones_do_not(
    app, client, worker, make_app, runner, tmp_path
):
    old_key = app.extensions[EXTENSION].key_id
    before = credited(client, worker, (50, 40))
    assert runner("receipts-key", "rotate").exit_code == 0
    rotated = make_app().test_client()
    after = credited(rotated, worker, (30, 20))
    new_key = after[0].receipt.key_id
    assert new_key != old_key

    found = verified(rotated, file_of(worker.wallet, [*before, *after]))
    assert found["ok"] is True, found
    assert found["keys"] == sorted([old_key, new_key])
    # Two calls of credited(), each counting back from its own now: a moment apart.
    assert found["provenSeconds"] == pytest.approx(30 * 60, abs=5)

    # A node not yet given the new key still signs with the retired one: refused.
    late = credited(client, worker, (10,))
    retired_at = CollectorKeyRecord.get_by_id(old_key).valid_until
    found = verified(rotated, file_of(worker.wallet, [*before, *after, *late]))
    [refusal] = found["refused"]
    assert refusal["receipt"] == 5
    assert refusal["reason"].startswith(f"signed with key {old_key} at ")
    assert refusal["reason"].endswith(f", after it was retired at {format_millis(retired_at)}")
    shown = runner("verify-receipts", written(tmp_path, file_of(worker.wallet, late)))
    assert shown.exit_code == 1
    assert f"receipt 1: signed with key {old_key} at " in shown.output


def test_a_period_asked_for_is_compared_instead_of_the_files(client, worker, runner, tmp_path):
    receipts = credited(client, worker)
    UptimeRecord.delete().execute()
    now = utcnow()
    # The closed window (200 to 180 minutes ago) lies outside the last two hours.
    data = file_of(worker.wallet, receipts, period="2001-01")
    asked = f"{format_timestamp(now - timedelta(hours=2))}/{format_timestamp(now)}"

    in_the_file = verified(client, data)
    assert in_the_file["period"]["label"] == "2001-01"
    assert in_the_file["provenSeconds"] == 0 and in_the_file["ok"] is True

    found = verified(client, data, period=asked)
    assert found["period"]["label"] == asked
    assert found["provenSeconds"] == pytest.approx(30 * 60, abs=0.01)
    assert found["recordedSeconds"] == pytest.approx(30 * 60, abs=0.01)
    assert found["ok"] is True

    shown = runner("verify-receipts", written(tmp_path, data), "--period", asked)
    assert shown.exit_code == 0, shown.output
    assert f"Period: {asked.replace('/', ' to ')}" in shown.output


def test_the_route_answers_what_the_command_prints_as_json(client, worker, runner, tmp_path):
    receipts = credited(client, worker)
    OpenWindow.delete().execute()
    broken = changed(receipts[0], key_id="0123456789abcdef")
    data = file_of(worker.wallet, [broken, *receipts[1:]])
    path = written(tmp_path, data)

    for query in ({}, {"period": "24h"}):
        options = ["--period", query["period"]] if query else []
        shown = runner("verify-receipts", path, "--json", *options)
        assert shown.exit_code == 1
        as_printed = json.loads(shown.output)
        answered = verified(client, data, **query)
        if query:  # a rolling period ends now: a moment apart
            for found in (as_printed, answered):
                del found["period"]
        assert as_printed == answered
        assert answered["refused"][0]["reason"] == (
            "signed by key 0123456789abcdef, which this collector never published"
        )


def test_the_route_is_public_changes_nothing_and_is_rate_limited(make_app, worker, client, dbconn):
    receipts = credited(client, worker)
    data = file_of(worker.wallet, receipts)

    def tables():
        return [
            sorted(m.select().tuples()) for m in (UptimeRecord, OpenWindow, CollectorKeyRecord)
        ] + [Worker.get_by_id(worker.wallet).last_heartbeat_at]

    before = tables()
    limited = make_app(rate_limit_writes="2/minute").test_client()
    assert [limited.post("/receipts/verify", data=data).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    assert tables() == before


MALFORMED = [
    (b"not json", "a receipt file must be JSON (UTF-8)"),
    (b"[" * 100_000, "the file nests JSON deeper than any receipt file does"),
    (
        b'{"type": "something else"}',
        'a receipt file is a JSON object with "type": "tassium-receipts"',
    ),
    (
        b'{"type": "tassium-receipts", "v": 1, "walletAddress": "0x12", "receipts": []}',
        "the file's walletAddress is not a wallet of this collector: ",
    ),
    (
        b'{"type": "tassium-receipts", "v": 1, "walletAddress": '
        b'"0x00000000000000000000000000000000000000aa", "period": "2026-13", "receipts": []}',
        "the file's period: period 2026-13: no such month",
    ),
    (
        b'{"type": "tassium-receipts", "v": 1, "walletAddress": '
        b'"0x00000000000000000000000000000000000000aa", "receipts": [{"body": {}}]}',
        "receipt 1: ",
    ),
]


@pytest.mark.parametrize(("data", "sentence"), MALFORMED, ids=range(len(MALFORMED)))
def test_a_malformed_file_is_one_sentence(client, runner, tmp_path, data, sentence):
    refused = client.post("/receipts/verify", data=data)
    assert refused.status_code == 400
    assert refused.get_json()["error"].startswith(sentence)

    path = written(tmp_path, data)
    shown = CliResult(runner("verify-receipts", path))
    assert shown.exit_code == 2
    assert shown.lines == [f"Error: {path}: {refused.get_json()['error']}"]


def test_a_missing_file_or_a_bad_period_stops_before_any_check(runner, client, tmp_path):
    missing = tmp_path / "nowhere.json"
    shown = CliResult(runner("verify-receipts", str(missing)))
    assert shown.exit_code == 2
    assert shown.lines == [f"Error: cannot read {missing}: No such file or directory"]

    data = file_of("0x00000000000000000000000000000000000000aa", [])
    shown = runner("verify-receipts", written(tmp_path, data), "--period", "yesterday")
    assert shown.exit_code == 2 and "period must be 24h, 7d, 30d" in shown.output
    refused = client.post("/receipts/verify", data=data, query_string={"period": "yesterday"})
    assert refused.status_code == 400
    assert refused.get_json()["error"].startswith("period must be 24h, 7d, 30d")


def test_an_empty_file_without_a_period_compares_nothing_and_passes(client, runner, tmp_path):
    data = file_of("0x00000000000000000000000000000000000000aa", [])
    found = verified(client, data)
    assert found["period"] is None and found["ok"] is True and found["workerKnown"] is False
    shown = runner("verify-receipts", written(tmp_path, data))
    assert shown.exit_code == 0
    assert "Period: none" in shown.output


def test_the_file_may_come_on_standard_input(client, worker, config_file):
    data = file_of(worker.wallet, credited(client, worker, (30, 20)))
    arguments = ["--config", str(config_file()), "verify-receipts", "-", "--json"]
    shown = CliRunner().invoke(cli, arguments, input=data, catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output) == verified(client, data)


def test_an_unreachable_database_is_one_clear_line(runner, tmp_path):
    data = file_of("0x00000000000000000000000000000000000000aa", [])
    url = f"postgresql://tassium@127.0.0.1:{free_port()}/tassium"
    shown = runner("verify-receipts", written(tmp_path, data), database_url=url)
    assert shown.exit_code == 1
    assert shown.output.startswith("Error: cannot use the database postgresql://")


class CliResult:
    """A command's result and its output's lines (standard error included)."""

    def __init__(self, result):
        self.exit_code = result.exit_code
        self.lines = result.output.splitlines()
