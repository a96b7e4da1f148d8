"""The collector's receipts, as the agent keeps them (one per window, bounded, whole after a
kill -9) and as ``tassium-agent receipts`` turns them into the file an owner sends."""

import base64
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent import keys, receipts
from agent.receipts import ReceiptStore
from agent.sender import judge
from agent.service import Agent
from agent.spool import Spool
from protocol.heartbeat import Heartbeat
from protocol.receipt_files import ReceiptFile
from protocol.receipts import Receipt, SignedReceipt, heartbeat_sha256, sign
from protocol.times import parse_timestamp, to_millis, utcnow
from tests.agent.fake_collector import FakeCollector, collector_json
from tests.factories import agent_config, connected, new_wallet
from tests.polling import wait_for

SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
# The collector's signing key, for receipts no collector is asked for.
SIGNER = Ed25519PrivateKey.generate()
NOVEMBER = datetime(2026, 11, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def delivered(wallet: str, start: datetime, end: datetime, **changes) -> tuple[bytes, dict]:
    """A heartbeat of ``wallet`` at ``end`` and the receipt a collector answers it with,
    for its window from ``start`` (``changes`` alter the receipt)."""
    body = Heartbeat(wallet, end).to_body()
    fields = {
        "key_id": "test-key",
        "wallet": wallet,
        "heartbeat_time": end,
        "heartbeat_sha256": heartbeat_sha256(body),
        "window_start": start,
        "window_end": end,
        "counted_millis": 0,
        "credits_millis": 0,
        "collector_time": end,
        **changes,
    }
    return body, sign(Receipt(**fields), SIGNER).to_json()


def kept(directory: Path) -> list[SignedReceipt]:
    """Every receipt in a store's month files, read without the store's code."""
    found = []
    for path in sorted(directory.glob("[0-9]*.jsonl")):  # not a temporary one
        found += [SignedReceipt.from_json(json.loads(line)) for line in path.read_text().split()]
    return found


def windows(found: list[SignedReceipt]) -> list[tuple[datetime, datetime]]:
    return [(s.receipt.window_start, s.receipt.window_end) for s in found]


def verifies(collector_url: str, signed: SignedReceipt) -> bool:
    """Whether ``signed`` checks against the key the collector publishes for its keyId."""
    published = httpx.get(collector_url + "/.well-known/tassium-collector.json", timeout=10)
    key = {k["keyId"]: k["publicKey"] for k in published.json()["keys"]}[signed.receipt.key_id]
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(key)).verify(
            signed.signature, signed.message()
        )
    except InvalidSignature:
        return False
    return True


def millis(text: str) -> datetime:
    return to_millis(parse_timestamp(text))


# --- against a real collector ------------------------------------------------------------------


@SQLITE
@pytest.mark.slow
def test_the_daemon_keeps_one_receipt_for_its_window_the_last(
    serve_collector, agent_process, dockerd
):
    collector = serve_collector()
    agent = agent_process(collector.url, interval=1, docker_host=dockerd.host)
    wait_for(lambda: collector.heartbeat_statuses().count(200) >= 4, agent.output)
    agent.stop()  # a clean stop: the delivery in progress, and its receipt, finish
    worker = httpx.get(f"{collector.url}/workers/{agent.wallet}", timeout=10).json()
    found = kept(agent.state_dir / "receipts")
    assert len(found) == 1, agent.output()
    receipt = found[0].receipt
    assert receipt.wallet == agent.wallet
    assert receipt.window_start == millis(worker["openWindow"]["startTime"])
    assert receipt.window_end == millis(worker["openWindow"]["endTime"])
    assert receipt.heartbeat_time == millis(worker["lastHeartbeat"])
    assert verifies(collector.url, found[0])
    month = receipts.month_of(receipt.window_start)
    assert sorted(p.name for p in (agent.state_dir / "receipts").iterdir()) == [
        ".lock",
        f"{month}.jsonl",
    ]
    assert (agent.state_dir / "receipts").stat().st_mode & 0o777 == 0o700


@pytest.fixture
def replayed(serve_collector, agent_process, tmp_path, history, request):
    """An agent that replays a backlog of two windows three minutes apart (the collector's gap is
    30 s) with ``once``, in batches or one heartbeat at a time: (collector, agent, the two
    windows as the heartbeats give them)."""
    collector = serve_collector(gap=30)
    agent = agent_process(
        collector.url,
        start=False,
        batch_size=request.param,
        docker_host=f"unix://{tmp_path}/no-docker.sock",
        docker_timeout=1,
    )
    history.known(agent.wallet)
    first = utcnow() - timedelta(minutes=10)
    times = [first + timedelta(seconds=s) for s in [*range(0, 121, 10), *range(300, 421, 10)]]
    spool = Spool(agent.spool_path, max_entries=1000)
    for moment in times:
        spool.append(Heartbeat(agent.wallet, moment).to_body())
    done = agent.command("once")
    # Its own heartbeat said Docker is down (no engine here): counted as downtime, exit 1.
    assert done.returncode == 1 and "counted as downtime" in done.stderr, done.stderr
    assert "credited 27, refused 0" in done.stderr
    return collector, agent, [(times[0], times[12]), (times[13], times[25])]


@SQLITE
@pytest.mark.parametrize("replayed", [100, 1], ids=["batches", "one-at-a-time"], indirect=True)
def test_once_keeps_the_last_receipt_of_each_window_of_a_backlog(replayed):
    collector, agent, expected = replayed
    found = kept(agent.state_dir / "receipts")
    # The live heartbeat said Docker was down (no engine here): no window, so no receipt.
    assert windows(found) == [(to_millis(a), to_millis(b)) for a, b in expected]
    assert [s.receipt.heartbeat_time for s in found] == [to_millis(b) for _, b in expected]
    uptime = httpx.get(f"{collector.url}/workers/{agent.wallet}/uptime", timeout=10).json()
    assert windows(found) == [
        (millis(r["timeFrom"]), millis(r["timeTo"])) for r in uptime["records"]
    ]
    assert all(verifies(collector.url, s) for s in found)


@SQLITE
@pytest.mark.parametrize("replayed", [100], ids=["batches"], indirect=True)
def test_the_receipts_command_prints_the_proven_uptime_and_writes_the_file(replayed, tmp_path):
    collector, agent, expected = replayed
    output = tmp_path / "sent.json"
    done = agent.command("receipts", "--period", "24h", "--output", str(output))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"Receipts for {agent.wallet} in the last 24h: 2 windows prove ")
    assert " 4 min 00 s up (0.3 % of the period)" in lines[0]
    # A line for each UTC day the last 24 hours touch, the windows' 4 minutes on theirs.
    days = {line.split()[0]: line for line in lines if line.startswith("  20")}
    today = utcnow().date()
    assert sorted(days) == [str(today - timedelta(days=1)), str(today)]
    if expected[0][0].date() == expected[1][1].date():  # not astride midnight
        up = str(expected[0][0].date())
        assert days[up].split()[1:5] == ["4", "min", "00", "s"]
        assert [days[d].split()[1:3] for d in days if d != up] == [["0", "s"]]
    assert "All 2 signatures check against the collector's keys" in done.stdout
    assert f"tassium-collector verify-receipts {output}" in done.stdout
    sent = ReceiptFile.from_bytes(output.read_bytes())
    assert (sent.wallet, sent.collector) == (agent.wallet, collector.url)
    # The last 24 hours as the interval they were when written, not "24h" to its reader.
    start, _, end = sent.period.partition("/")
    spanned = parse_timestamp(end, "end") - parse_timestamp(start, "start")
    assert spanned == timedelta(hours=24) and parse_timestamp(end, "end") <= utcnow()
    assert list(sent.receipts) == kept(agent.state_dir / "receipts")

    collector.stop()
    again = agent.command("receipts", "--period", "24h", "--output", str(output))
    assert again.returncode == 0, again.stderr
    assert "The signatures could not be checked now" in again.stdout
    assert ReceiptFile.from_bytes(output.read_bytes()).receipts == sent.receipts
    nowhere = tmp_path / "no-such-directory" / "sent.json"
    refused = agent.command("receipts", "--period", "24h", "--output", str(nowhere))
    assert refused.returncode == 1 and f"cannot write {nowhere}: " in refused.stderr


@SQLITE
@pytest.mark.parametrize("replayed", [100], ids=["batches"], indirect=True)
def test_an_owners_file_checks_at_the_collector_and_outlives_its_records(
    replayed, runner, config, tmp_path
):
    """The whole dispute: the agent's file, checked by the collector's command against the
    same database the served collector wrote; then the records are lost, and the file still
    proves both windows, hour by hour, where the records now show nothing."""
    collector, agent, expected = replayed
    output = tmp_path / "sent.json"
    assert agent.command("receipts", "--period", "24h", "--output", str(output)).returncode == 0

    checked = runner("verify-receipts", str(output), "--json")
    assert checked.exit_code == 0, checked.output
    found = json.loads(checked.stdout)
    proven = sum((to_millis(b) - to_millis(a)).total_seconds() for a, b in expected)
    assert found["ok"] is True and found["valid"] == 2
    assert found["provenSeconds"] == found["recordedSeconds"] == pytest.approx(proven)

    from collector.store.models import OpenWindow, UptimeRecord  # agent tests import no Peewee

    with connected(config.database_url):
        UptimeRecord.delete().where(UptimeRecord.worker == agent.wallet).execute()
        OpenWindow.delete().where(OpenWindow.worker == agent.wallet).execute()
    lost = runner("verify-receipts", str(output))
    assert lost.exit_code == 1
    assert "the collector's records lack uptime its receipts prove" in lost.stdout
    again = json.loads(runner("verify-receipts", str(output), "--json").stdout)
    assert (again["provenSeconds"], again["recordedSeconds"]) == (pytest.approx(proven), 0)
    assert sum(h["provenSeconds"] for h in again["hours"]) == pytest.approx(proven)


@SQLITE
@pytest.mark.parametrize("replayed", [100], ids=["batches"], indirect=True)
def test_an_intervals_file_is_named_without_its_slash_in_the_current_directory(replayed, tmp_path):
    _, agent, expected = replayed
    start, end = expected[0][0] - timedelta(hours=1), expected[1][1] + timedelta(hours=1)
    label = f"{start:%Y-%m-%dT%H:00:00Z}/{end:%Y-%m-%dT%H:00:00Z}"
    here = tmp_path / "here"
    here.mkdir()
    done = subprocess.run(
        agent._argv("receipts", "--period", label), cwd=here, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    [written] = list(here.iterdir())
    assert written.name == f"tassium-receipts-{label.replace(':', '').replace('/', '_')}.json"
    assert len(ReceiptFile.from_bytes(written.read_bytes()).receipts) == 2
    assert f"from {start:%Y-%m-%d %H}:00 UTC to {end:%Y-%m-%d %H}:00 UTC" in done.stdout


# --- the command's mistakes ----------------------------------------------------------------------


@pytest.fixture
def configured(tmp_path) -> Path:
    """An agent's configuration with a state directory and no receipts."""
    (tmp_path / "state").mkdir()
    path = tmp_path / "agent.yaml"
    path.write_text(
        f"collector_url: http://127.0.0.1:9\nwallet: '{new_wallet()}'\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    return path


def agent_command(config: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from agent.cli import main; main()", "--config", str(config),
         *args],
        capture_output=True, text=True, timeout=60, cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def test_without_receipts_the_command_says_so_and_writes_nothing(configured, tmp_path):
    here = tmp_path / "here"
    here.mkdir()
    done = agent_command(configured, "receipts", "--period", "2026-11", cwd=here)
    assert done.returncode == 1
    assert (
        done.stderr.startswith("No receipts for 0x") and " in 2026-11 are kept in " in done.stderr
    )
    assert "Traceback" not in done.stderr and list(here.iterdir()) == []


@pytest.mark.parametrize(
    ("period", "said"),
    [
        ("2026-13", "period 2026-13: no such month"),
        ("november", "period must be 24h, 7d, 30d, a month like 2026-11, or an interval"),
    ],
)
def test_a_bad_period_is_one_sentence(configured, tmp_path, period, said):
    done = agent_command(configured, "receipts", "--period", period, cwd=tmp_path)
    assert done.returncode == 2
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"tassium-agent receipts: error: argument --period: {said}")
    assert "Traceback" not in done.stderr


# --- what is kept --------------------------------------------------------------------------------


def test_a_window_keeps_only_its_latest_receipt_whatever_the_order(tmp_path):
    wallet = new_wallet()
    store = ReceiptStore(tmp_path / "receipts", wallet)
    start = NOVEMBER + timedelta(hours=5)
    answers = [delivered(wallet, start, start + timedelta(minutes=m)) for m in (1, 2, 3, 4)]
    random.shuffle(answers)
    for answer in answers:
        store.keep([answer])
    other = delivered(wallet, start + timedelta(hours=1), start + timedelta(hours=2))
    store.keep([other])
    assert windows(kept(tmp_path / "receipts")) == [
        (start, start + timedelta(minutes=4)),
        (start + timedelta(hours=1), start + timedelta(hours=2)),
    ]
    # Another store (``once`` beside the daemon) sees what this one kept, and adds to it.
    ReceiptStore(tmp_path / "receipts", wallet).keep(
        [delivered(wallet, start, start + timedelta(minutes=9))]
    )
    store.keep([delivered(wallet, start, start + timedelta(minutes=5))])
    assert windows(kept(tmp_path / "receipts"))[0] == (start, start + timedelta(minutes=9))


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"wallet": new_wallet()}, "it is for the wallet 0x"),
        ({"heartbeat_sha256": "0" * 64}, "its heartbeatSha256 is not that of the heartbeat sent"),
    ],
    ids=["another-wallet", "another-heartbeat"],
)
def test_a_receipt_for_another_wallet_or_heartbeat_is_not_kept(tmp_path, caplog, change, said):
    wallet = new_wallet()
    store = ReceiptStore(tmp_path / "receipts", wallet)
    body, _ = delivered(wallet, NOVEMBER, NOVEMBER + timedelta(minutes=1))
    _, answer = delivered(change.get("wallet", wallet), NOVEMBER, NOVEMBER + timedelta(minutes=1),
                          **{k: v for k, v in change.items() if k != "wallet"})  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="agent.receipts"):
        assert store.keep([(body, answer)]) == 0
    assert said in caplog.text
    assert not (tmp_path / "receipts").exists()


@pytest.fixture
def make_agent(tmp_path):
    """An Agent of a FakeCollector, Docker pointed at nothing, one heartbeat a request."""
    made = []

    def make(url: str) -> Agent:
        config = agent_config(
            url,
            tmp_path / f"agent-{len(made)}",
            docker_host=f"unix://{tmp_path}/no-docker.sock",
            docker_timeout=1,
            batch_size=1,
        )
        made.append(Agent(config, keys.generate(config.key_path)))
        return made[-1]

    yield make
    for agent in made:
        agent.close()


def answering(receipt_for) -> callable:
    """A collector that credits every heartbeat with ``receipt_for(body)``."""

    def answer(request):
        if request.path == "/heartbeat":
            return collector_json(accepted=True, receipt=receipt_for(request.body))
        return collector_json(status="ok", maxSkew=120)

    return answer


def own_receipt(body: bytes, **changes) -> dict:
    """The receipt of the heartbeat ``body`` (``changes`` alter it), for a window of a minute."""
    beat = json.loads(body)
    at = parse_timestamp(beat["timestamp"])
    changes = {"heartbeat_sha256": heartbeat_sha256(body), **changes}
    wallet = changes.pop("wallet", beat["walletAddress"])
    return delivered(wallet, at - timedelta(minutes=1), at, **changes)[1]


@pytest.mark.parametrize(
    "receipt_for",
    [
        lambda body: own_receipt(body, heartbeat_sha256=heartbeat_sha256(body + b" ")),
        lambda body: {**own_receipt(body), "signature": "not base64"},
        lambda body: own_receipt(body, wallet=new_wallet()),
    ],
    ids=["another-heartbeat", "unreadable", "another-wallet"],
)
def test_a_heartbeat_answered_with_a_wrong_receipt_still_counts_and_nothing_is_kept(
    make_agent, caplog, receipt_for
):
    with FakeCollector(answering(receipt_for)) as collector:
        agent = make_agent(collector.url)
        agent.take()
        with caplog.at_level(logging.WARNING, logger="agent.receipts"):
            report = agent.drain(force=True)
    assert (report.credited, report.pending, report.error) == (1, 0, None)
    assert "a receipt from the collector was not kept" in caplog.text
    assert kept(agent.config.state_dir / "receipts") == []


def test_a_store_that_cannot_be_written_never_fails_a_heartbeat_and_says_so_once(
    make_agent, caplog
):
    with FakeCollector(answering(own_receipt)) as collector:
        agent = make_agent(collector.url)
        agent.config.state_dir.mkdir(parents=True, exist_ok=True)
        (agent.config.state_dir / "receipts").write_text("a file where the store goes")
        with caplog.at_level(logging.INFO, logger="agent.service"):
            for _ in range(3):
                agent.take()
                assert agent.drain(force=True).credited == 1
            assert caplog.text.count("cannot keep the collector's receipts") == 1
            (agent.config.state_dir / "receipts").unlink()
            agent.take()
            assert agent.drain(force=True).credited == 1
    assert "receipts are being kept again" in caplog.text
    assert len(kept(agent.config.state_dir / "receipts")) == 1


def test_the_answers_receipt_rides_with_a_credited_verdict_only():
    receipt = {"body": {}, "signature": ""}
    assert judge(200, {"accepted": True, "receipt": receipt}).receipt is receipt
    assert judge(200, {"accepted": True}).receipt is None
    assert judge(409, {"error": "stored", "stored": True, "receipt": receipt}).receipt is None


# --- bounded ----------------------------------------------------------------------------------


def test_a_month_keeps_at_most_its_windows_dropping_the_oldest_with_one_warning(tmp_path, caplog):
    wallet = new_wallet()
    store = ReceiptStore(tmp_path / "receipts", wallet, max_windows=3)
    starts = [NOVEMBER + timedelta(hours=h) for h in range(6)]
    with caplog.at_level(logging.WARNING, logger="agent.receipts"):
        for start in starts:
            store.keep([delivered(wallet, start, start + timedelta(minutes=30))])
    assert [a for a, _ in windows(kept(tmp_path / "receipts"))] == starts[-3:]
    assert caplog.text.count("the most kept for a month") == 1


def test_only_the_newest_months_are_kept(tmp_path):
    wallet = new_wallet()
    store = ReceiptStore(tmp_path / "receipts", wallet, max_months=2)
    for month in (9, 10, 11):
        start = datetime(2026, month, 3, tzinfo=UTC)
        store.keep([delivered(wallet, start, start + timedelta(hours=1))])
    assert receipts.month_files(tmp_path / "receipts") == ["2026-10", "2026-11"]
    # A backlog from a month no longer kept is not written back.
    late = datetime(2026, 9, 4, tzinfo=UTC)
    assert (
        ReceiptStore(tmp_path / "receipts", wallet, max_months=2).keep(
            [delivered(wallet, late, late + timedelta(hours=1))]
        )
        == 0
    )
    assert receipts.month_files(tmp_path / "receipts") == ["2026-10", "2026-11"]


def test_every_window_of_a_year_at_the_monthly_bound_fits_in_one_receipt_file():
    from protocol.receipt_files import MAX_RECEIPTS

    assert 13 * receipts.MAX_WINDOWS <= MAX_RECEIPTS  # a 366-day period touches 13 months


# --- damage and kill -9 ------------------------------------------------------------------------


def test_a_damaged_file_is_set_aside_and_what_can_be_read_is_kept(tmp_path, caplog):
    wallet = new_wallet()
    directory = tmp_path / "receipts"
    store = ReceiptStore(directory, wallet)
    store.keep([delivered(wallet, NOVEMBER, NOVEMBER + timedelta(minutes=1))])
    month = directory / "2026-11.jsonl"
    month.write_bytes(month.read_bytes() + b'{"body": {"half\n\xff\n')
    later = NOVEMBER + timedelta(days=1)
    with caplog.at_level(logging.ERROR, logger="agent.receipts"):
        assert ReceiptStore(directory, wallet).keep([delivered(wallet, later, later)]) == 1
    assert "receipt file" in caplog.text and "is damaged (line 2:" in caplog.text
    assert [a for a, _ in windows(kept(directory))] == [NOVEMBER, later]
    [aside] = list((directory / "quarantine").iterdir())
    assert aside.name.startswith("2026-11.jsonl.") and aside.read_bytes().endswith(b"\xff\n")


def test_the_files_set_aside_are_bounded_too(tmp_path):
    wallet = new_wallet()
    directory = tmp_path / "receipts"
    store = ReceiptStore(directory, wallet)
    for hour in range(receipts.QUARANTINE_KEPT + 3):
        start = NOVEMBER + timedelta(hours=hour)
        if hour:
            with (directory / "2026-11.jsonl").open("ab") as month:
                month.write(b"not a receipt\n")
        assert store.keep([delivered(wallet, start, start)]) == 1
    aside = sorted(p.name for p in (directory / "quarantine").iterdir())
    assert len(aside) == receipts.QUARANTINE_KEPT
    assert len(kept(directory)) == receipts.QUARANTINE_KEPT + 3


def test_a_month_file_that_is_not_a_file_is_set_aside(tmp_path):
    wallet = new_wallet()
    directory = tmp_path / "receipts"
    (directory / "2026-11.jsonl").mkdir(parents=True)
    assert ReceiptStore(directory, wallet).keep([delivered(wallet, NOVEMBER, NOVEMBER)]) == 1
    assert len(kept(directory)) == 1 and len(list((directory / "quarantine").iterdir())) == 1


KEEPER = """
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from agent.keys import AgentKey
from agent.receipts import ReceiptStore
from protocol.heartbeat import Heartbeat
from protocol.receipts import Receipt, heartbeat_sha256, sign
wallet, first = sys.argv[2], int(sys.argv[3])
store, signer = ReceiptStore(Path(sys.argv[1]), wallet), AgentKey.generate()
print("ready", flush=True)
for minute in range(first, first + 100_000):
    start = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=minute)
    body = Heartbeat(wallet, start).to_body()
    receipt = Receipt("test-key", wallet, start, heartbeat_sha256(body), start, start, 0, 0, start)
    store.keep([(body, sign(receipt, signer).to_json())])
"""


@pytest.mark.slow
def test_a_writer_killed_at_any_moment_leaves_a_whole_file(tmp_path):
    wallet = new_wallet()
    directory = tmp_path / "receipts"
    # A month of 2000 windows: each receipt kept rewrites a megabyte, a wide target.
    ReceiptStore(directory, wallet).keep(
        [delivered(wallet, NOVEMBER + timedelta(minutes=m), NOVEMBER + timedelta(minutes=m))
         for m in range(2000)]
    )  # fmt: skip
    count = 2000
    for _ in range(8):
        keeper = subprocess.Popen(
            [sys.executable, "-c", KEEPER, str(directory), wallet, str(count)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert keeper.stdout.readline() == "ready\n"
        time.sleep(random.uniform(0.2, 0.6))  # loading the month takes about 0.2 s
        keeper.send_signal(signal.SIGKILL)
        keeper.wait()
        keeper.stdout.close()
        found = kept(directory)  # raises on a line cut short
        assert len(found) >= count and len({s.receipt.window_start for s in found}) == len(found)
        count = len(found)
    assert count > 2000, "no receipt was kept before a kill: the test proved nothing"
    # The lock died with its holder: another process keeps at once.
    late = NOVEMBER + timedelta(days=20)
    assert ReceiptStore(directory, wallet).keep([delivered(wallet, late, late)]) == 1
    assert len(kept(directory)) == count + 1
