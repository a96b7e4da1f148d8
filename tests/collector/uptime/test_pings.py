"""Pings (collector/uptime/pings.py, ``POST /heartbeat/ping``): the signed "still here" between
heartbeats, kept in memory and written in batches; the live status it drives
(``GET /workers/<wallet>/status``); and, over real HTTP, a ping taken by one serving process
seen by every process within the flush interval."""

import time
from datetime import datetime, timedelta

import httpx
import pytest

from collector.store import db
from collector.store.models import Worker
from collector.uptime.pings import FLUSH_SECONDS, HEALTHY, UNKNOWN, WARNING, PingBook
from protocol.heartbeat import SIGNATURE_HEADER
from protocol.times import format_timestamp, parse_timestamp, utcnow
from tests.collector.uptime.test_windows import T0
from tests.conftest import free_port
from tests.factories import FakeWorker, connected, enroll_with_token
from tests.polling import wait_for


@pytest.fixture
def book(app) -> PingBook:
    book = app.extensions["tassium.pings"]
    yield book
    # Written now, while this test's database is there, not at the process's exit.
    book.flush()


@pytest.fixture
def worker(client) -> FakeWorker:
    worker = FakeWorker()
    assert worker.enroll(client).status_code == 201
    return worker


def stored_ping(wallet: str) -> datetime | None:
    return Worker.get_by_id(wallet).last_ping_at


def status(client, wallet: str) -> dict:
    response = client.get(f"/workers/{wallet}/status")
    assert response.status_code == 200, response.json
    return response.json


# --- taking a ping ------------------------------------------------------------------------


def test_a_signed_ping_is_taken_in_memory_and_written_by_the_flush(client, worker, book, dbconn):
    ts = utcnow().replace(microsecond=0) - timedelta(seconds=2)
    response = worker.ping(client, ts)

    assert response.status_code == 200, response.json
    assert response.json["accepted"] is True
    assert response.json["lastPing"] == format_timestamp(ts)
    assert "serverTime" in response.json
    # This process reads it at once; the database has it only after the flush.
    assert status(client, worker.wallet) == {
        "walletAddress": worker.wallet,
        "state": "never_seen",  # a ping is no heartbeat: nothing is paid yet
        "paid": False,
        "status": UNKNOWN,
        "lastPing": format_timestamp(ts),
    }
    assert book.latest(worker.wallet) == ts
    assert stored_ping(worker.wallet) is None

    assert book.flush() == 1
    assert stored_ping(worker.wallet) == ts
    assert book.latest(worker.wallet) is None
    assert status(client, worker.wallet)["lastPing"] == format_timestamp(ts)


def test_a_ping_ahead_of_the_collectors_clock_counts_as_now(client, worker, book):
    before = utcnow()
    response = worker.ping(client, before + timedelta(seconds=60))  # within max_skew
    assert response.status_code == 200
    taken = parse_timestamp(response.json["lastPing"])
    assert before <= taken <= utcnow()


def test_a_ping_moves_neither_uptime_nor_credits(client, worker, book, dbconn):
    worker.ping(client)
    book.flush()
    stored = Worker.get_by_id(worker.wallet)
    assert (stored.last_heartbeat_at, stored.credits_millis) == (None, 0)
    uptime = client.get(f"/workers/{worker.wallet}/uptime").json
    assert (uptime["openWindow"], uptime["records"]) == (None, [])


def other_key(worker: FakeWorker) -> tuple[bytes, dict]:
    return FakeWorker(worker.wallet).signed(worker.ping_body())


def ping_refusals(worker: FakeWorker, max_skew: int) -> dict:
    """Each refused ping: its body, headers and the status it must get."""
    json_headers = {"Content-Type": "application/json"}
    unsigned = worker.signed(worker.ping_body())[0]
    stranger = FakeWorker()
    late = utcnow() - timedelta(seconds=max_skew + 30)
    early = utcnow() + timedelta(seconds=max_skew + 30)
    malformed = {**worker.ping_body(), "timestamp": "yesterday"}
    return {
        "unsigned": (unsigned, json_headers, 401),
        "another-key": (*other_key(worker), 401),
        "bad-signature": (unsigned, {**json_headers, SIGNATURE_HEADER: "A" * 86 + "=="}, 401),
        "unknown-worker": (*stranger.signed(stranger.ping_body()), 404),
        # A ping is about now: no backfill, only the clock skew either way.
        "too-old": (*worker.signed(worker.ping_body(late)), 422),
        "too-new": (*worker.signed(worker.ping_body(early)), 422),
        "bad-timestamp": (*worker.signed(malformed), 400),
        "not-json": (*worker.signed(b"{not json"), 400),
        "not-an-object": (*worker.signed(b"[1, 2]"), 400),
        "bad-wallet": (*worker.signed({**worker.ping_body(), "walletAddress": "0x12"}), 400),
    }


@pytest.mark.parametrize(
    "case",
    [
        "unsigned",
        "another-key",
        "bad-signature",
        "unknown-worker",
        "too-old",
        "too-new",
        "bad-timestamp",
        "not-json",
        "not-an-object",
        "bad-wallet",
    ],
)
def test_a_refused_ping_writes_nothing(client, worker, book, dbconn, app, case):
    body, headers, expected = ping_refusals(worker, app.config["TASSIUM"].max_skew)[case]

    response = client.post("/heartbeat/ping", data=body, headers=headers)

    assert response.status_code == expected, response.json
    assert response.json["error"] and response.json["serverTime"]
    assert book.latest(worker.wallet) is None
    assert book.flush() == 0
    assert stored_ping(worker.wallet) is None
    assert status(client, worker.wallet)["status"] == UNKNOWN


def test_with_signatures_off_a_ping_needs_a_worker_seen_before(make_app, dbconn):
    client = make_app(require_signatures=False).test_client()
    worker = FakeWorker()
    body = worker.ping_body()

    assert client.post("/heartbeat/ping", json=body).status_code == 404
    assert Worker.get_or_none(Worker.wallet_address == worker.wallet) is None

    plain = worker.heartbeat_body(utcnow() - timedelta(seconds=10))
    assert client.post("/heartbeat", json=plain).status_code == 200
    assert client.post("/heartbeat/ping", json=worker.ping_body()).status_code == 200
    assert client.application.extensions["tassium.pings"].flush() == 1


# --- the state a ping keeps (collector/uptime/states.py) --------------------------------------


def heard(wallet: str, seconds_ago: float) -> None:
    """The worker's last heartbeat stamped and received that long ago (within the gap)."""
    at = utcnow().replace(microsecond=0) - timedelta(seconds=seconds_ago)
    Worker.update(last_heartbeat_at=at, last_seen_at=at).where(
        Worker.wallet_address == wallet
    ).execute()


@pytest.mark.parametrize(
    "age, state, label",
    [(45, "up", HEALTHY), (85, "up", HEALTHY), (200, "late", WARNING)],
    ids=["45s", "85s", "200s"],
)
def test_the_status_route_reads_the_stored_ping(client, worker, dbconn, age, state, label):
    heard(worker.wallet, 600)  # its heartbeat within the gap, but long enough ago
    last = utcnow().replace(microsecond=0) - timedelta(seconds=age)
    Worker.update(last_ping_at=last).where(Worker.wallet_address == worker.wallet).execute()

    assert status(client, worker.wallet) == {
        "walletAddress": worker.wallet,
        "state": state,
        "paid": True,
        "status": label,
        "lastPing": format_timestamp(last),
    }
    assert client.get(f"/workers/{worker.wallet}").json["status"] == label


def test_the_status_follows_the_configured_ping_interval(make_app, dbconn):
    client = make_app(ping_interval=10).test_client()
    worker = FakeWorker()
    worker.enroll(client)
    heard(worker.wallet, 600)
    last = utcnow() - timedelta(seconds=25)
    Worker.update(last_ping_at=last).where(Worker.wallet_address == worker.wallet).execute()
    assert status(client, worker.wallet)["state"] == "up"
    Worker.update(last_ping_at=last - timedelta(seconds=10)).where(
        Worker.wallet_address == worker.wallet
    ).execute()
    assert status(client, worker.wallet)["state"] == "late"  # 35 s: past 3 intervals of 10


def test_a_worker_never_heard_from_is_unknown_and_a_heartbeat_counts_as_life(client, worker):
    assert status(client, worker.wallet) == {
        "walletAddress": worker.wallet,
        "state": "never_seen",
        "paid": False,
        "status": UNKNOWN,
        "lastPing": None,
    }
    # Sent 10 minutes ago (spooled), it arrives now: the worker is alive now.
    assert worker.beat(client, utcnow() - timedelta(minutes=10)).status_code == 200
    assert status(client, worker.wallet)["status"] == HEALTHY


def test_the_latest_sign_of_life_wins(client, worker, book, dbconn):
    heard(worker.wallet, 600)
    old = utcnow().replace(microsecond=0) - timedelta(seconds=100)
    Worker.update(last_ping_at=old).where(Worker.wallet_address == worker.wallet).execute()
    assert status(client, worker.wallet)["state"] == "late"
    fresh = utcnow().replace(microsecond=0) - timedelta(seconds=1)
    worker.ping(client, fresh)
    # This process reads its own ping at once, before the flush writes it.
    assert status(client, worker.wallet)["lastPing"] == format_timestamp(fresh)
    assert status(client, worker.wallet)["state"] == "up"


@pytest.mark.parametrize("path, code", [("0x" + "2" * 40, 404), ("0x123", 400)])
def test_the_status_of_an_unknown_or_invalid_wallet_is_refused(client, path, code):
    assert client.get(f"/workers/{path}/status").status_code == code


# --- the book -----------------------------------------------------------------------------


def enrolled(wallet_count: int = 1) -> list[str]:
    wallets = [FakeWorker().wallet for _ in range(wallet_count)]
    for wallet in wallets:
        enroll_with_token(wallet, FakeWorker().public_key)
    return wallets


def test_the_book_keeps_the_latest_ping_of_each_worker(dbconn):
    book = PingBook(flush_seconds=3600)
    first, second = enrolled(2)
    book.record(first, T0)
    book.record(first, T0 - timedelta(seconds=5))  # arrived late: the later one stays
    book.record(second, T0 + timedelta(seconds=1))

    assert book.flush() == 2
    assert (stored_ping(first), stored_ping(second)) == (T0, T0 + timedelta(seconds=1))
    assert book.flush() == 0


def test_a_flush_never_moves_the_stored_ping_backwards(dbconn):
    (wallet,) = enrolled()
    # Another process wrote a later ping first.
    Worker.update(last_ping_at=T0).where(Worker.wallet_address == wallet).execute()
    book = PingBook(flush_seconds=3600)

    book.record(wallet, T0 - timedelta(seconds=10))
    book.flush()
    assert stored_ping(wallet) == T0

    book.record(wallet, T0 + timedelta(seconds=10))
    book.flush()
    assert stored_ping(wallet) == T0 + timedelta(seconds=10)


def test_a_flush_for_a_worker_that_is_gone_writes_nothing(dbconn):
    book = PingBook(flush_seconds=3600)
    book.record(FakeWorker().wallet, T0)
    assert book.flush() == 1  # written as far as the book knows: nothing to update
    assert Worker.select().count() == 0


def test_a_failing_flush_keeps_the_pings_for_the_next(database_url, caplog):
    with connected(database_url):
        (wallet,) = enrolled()
    book = PingBook(flush_seconds=3600)
    book.record(wallet, T0)

    # A real database that is down: nothing listens on the port.
    db.bind(f"postgresql://tassium@127.0.0.1:{free_port()}/tassium")
    assert book.flush() == 0
    assert book.latest(wallet) == T0
    assert "pings not written, database unavailable" in caplog.text
    # A newer ping taken meanwhile is kept over the failed batch's.
    book.record(wallet, T0 + timedelta(seconds=30))

    with connected(database_url):
        assert book.flush() == 1
        assert stored_ping(wallet) == T0 + timedelta(seconds=30)
    assert book.latest(wallet) is None
    assert "pings written again" in caplog.text


# --- served: the flush makes a ping visible to every process ------------------------------


@pytest.mark.slow
# The flush's statements are the same on both databases (test_pings covers each above).
@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_ping_taken_by_one_process_reaches_every_process_within_the_flush(
    serve_collector, database_url
):
    worker = FakeWorker()
    with connected(database_url):
        enroll_with_token(worker.wallet, worker.public_key)
    collector = serve_collector(processes=2)
    url = f"{collector.url}/workers/{worker.wallet}/status"

    def read() -> dict:
        # A new connection each time, so that reads land on either process.
        with httpx.Client() as fresh:
            return fresh.get(url, timeout=10).json()

    assert read()["status"] == UNKNOWN
    raw, headers = worker.signed(worker.ping_body())
    sent = time.monotonic()
    answer = httpx.post(collector.url + "/heartbeat/ping", content=raw, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    last = answer.json()["lastPing"]

    def written() -> bool:
        with connected(database_url):
            return stored_ping(worker.wallet) is not None

    wait_for(written, "the process that took the ping writing it", timeout=FLUSH_SECONDS + 5)
    assert time.monotonic() - sent < FLUSH_SECONDS + 3
    # Written, it is what every process answers, whichever takes the read.
    reads = [read() for _ in range(20)]
    # (No heartbeat yet: never seen, whatever its pings; the ping is what each process reads.)
    seen = {"walletAddress": worker.wallet, "state": "never_seen", "paid": False}
    assert all(r == {**seen, "status": UNKNOWN, "lastPing": last} for r in reads)
