"""/metrics (collector/web/telemetry.py): heartbeats counted as accepted or under the reason they
were refused, request latency labelled by route, the fleet gauges as the database has them,
the sweeper's counters, the token with private_pages, and, served by gunicorn, totals summed
over every process whichever one answers the scrape.

The counters belong to the test process (as to a serving process), so tests compare
before-and-after values, never absolute ones."""

import base64
import json
import signal
import stat
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from collector.store.models import OpenWindow, Worker
from collector.uptime import states
from collector.uptime.sweeper import SweeperThread, sweep_pass
from protocol.heartbeat import SIGNATURE_HEADER
from protocol.times import utcnow
from tests.factories import FakeWorker, minutes_ago
from tests.polling import wait_for

API_TOKEN = "telemetry-test-token-0123456789"
ACCEPTED = "tassium_heartbeats_accepted_total"
TRANSACTIONS = "tassium_heartbeat_transactions_total"
REJECTED = "tassium_heartbeats_rejected_total"
LATENCY = "tassium_http_request_duration_seconds_count"

Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client, **headers) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return parse(response.get_data(as_text=True))


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def rejected(samples: Samples) -> dict[str, float]:
    return {dict(labels)["reason"]: v for (name, labels), v in samples.items() if name == REJECTED}


def changes(before: Samples, after: Samples) -> dict[str, float]:
    """What each rejection reason gained, leaving those that did not move."""
    gained = {reason: v - rejected(before).get(reason, 0) for reason, v in rejected(after).items()}
    return {reason: v for reason, v in gained.items() if v}


def batch(*entries: tuple[bytes, dict]) -> dict:
    return {
        "heartbeats": [
            {"body": raw.decode(), "signature": headers[SIGNATURE_HEADER]}
            for raw, headers in entries
        ]
    }


# --- heartbeats ---------------------------------------------------------------------------


def test_every_accepted_heartbeat_is_counted_whichever_route_took_it(client, worker):
    before = scrape(client)
    assert worker.beat(client, minutes_ago(10)).status_code == 200
    response = client.post(
        "/heartbeats",
        json=batch(
            worker.signed(worker.heartbeat_body(minutes_ago(9))),
            worker.signed(worker.heartbeat_body(minutes_ago(8))),
        ),
    )
    assert [r["status"] for r in response.json["results"]] == [200, 200]
    raw, headers = worker.signed(worker.heartbeat_body(minutes_ago(7)))
    assert client.post("/api/v1/heartbeat", data=raw, headers=headers).status_code == 200
    after = scrape(client)
    assert value(after, ACCEPTED) - value(before, ACCEPTED) == 4
    # One each, the batch's two together.
    assert value(after, TRANSACTIONS) - value(before, TRANSACTIONS) == 3
    assert changes(before, after) == {}


def test_each_refusal_is_counted_under_its_reason(client, worker):
    stranger = FakeWorker()  # signs well, but never enrolled
    impostor = FakeWorker(worker.wallet)  # the enrolled wallet, another key
    raw, headers = worker.signed(worker.heartbeat_body(minutes_ago(10)))

    def post(raw: bytes, headers: dict) -> int:
        return client.post("/heartbeat", data=raw, headers=headers).status_code

    assert post(raw, headers) == 200
    before = scrape(client)
    assert post(raw, headers) == 409  # the same heartbeat again: a duplicate
    assert post(*worker.signed(worker.heartbeat_body(minutes_ago(180)))) == 409  # out of order
    assert post(raw.replace(b"{", b"[", 1), headers) == 400
    assert post(raw, {"Content-Type": "application/json"}) == 401
    assert post(*impostor.signed(impostor.heartbeat_body())) == 401
    assert post(*stranger.signed(stranger.heartbeat_body())) == 404
    assert post(*worker.signed(worker.heartbeat_body(utcnow() - timedelta(days=2)))) == 422
    assert post(b"{" + b" " * 300_000 + b"}", {"Content-Type": "application/json"}) == 413
    after = scrape(client)
    assert changes(before, after) == {
        "duplicate": 1,
        "stale": 1,
        "malformed": 1,
        "unsigned": 1,
        "bad_signature": 1,
        "unknown_worker": 1,
        "clock": 1,
        "too_large": 1,
    }
    assert value(after, ACCEPTED) == value(before, ACCEPTED)


def test_a_batch_counts_each_heartbeat_and_a_refused_batch_once(client, worker):
    once = worker.signed(worker.heartbeat_body(minutes_ago(5)))
    before = scrape(client)
    response = client.post(
        "/heartbeats",
        json=batch(
            once,
            once,
            worker.signed(worker.heartbeat_body(utcnow() + timedelta(hours=1))),
        ),
    )
    assert [r["status"] for r in response.json["results"]] == [200, 409, 422]
    assert client.post("/heartbeats", json={"heartbeats": "many"}).status_code == 400
    after = scrape(client)
    assert value(after, ACCEPTED) - value(before, ACCEPTED) == 1
    assert changes(before, after) == {"duplicate": 1, "clock": 1, "malformed": 1}


# SQLite's "unable to open database file" (the directory is gone) as the database down.
GONE = pytest.mark.parametrize("backend", ["sqlite"])


@GONE
def test_a_heartbeat_the_database_could_not_take_is_counted_with_the_outage(make_app, tmp_path):
    client = make_app(database_url=f"sqlite:///{tmp_path / 'gone' / 'c.db'}").test_client()
    before = scrape(client)
    worker = FakeWorker()
    assert worker.beat(client).status_code == 503
    after = scrape(client)
    assert changes(before, after) == {"database_down": 1}
    # The heartbeat's 503, and the first scrape's fleet gauges (a scrape reads the counters
    # before it tries the database).
    errors = "tassium_database_errors_total"
    assert value(after, errors, where="request") - value(before, errors, where="request") == 2
    assert value(after, "tassium_database_up") == 0
    assert ("tassium_workers_online", frozenset()) not in after


# --- latency ------------------------------------------------------------------------------


def test_latency_is_labelled_by_route_never_by_path(client, worker):
    before = scrape(client)
    assert client.get(f"/workers/{worker.wallet}").status_code == 200
    assert client.get(f"/nothing/{worker.wallet}").status_code == 404
    assert client.put("/heartbeat").status_code == 405
    assert client.open("/healthz", method="BREW").status_code == 405
    after = scrape(client)

    def gained(**labels: str) -> float:
        return value(after, LATENCY, **labels) - value(before, LATENCY, **labels)

    assert gained(route="/workers/<address>", method="GET", status="200") == 1
    assert gained(route="unmatched", method="GET", status="404") == 1
    assert gained(route="unmatched", method="PUT", status="405") == 1
    assert gained(route="unmatched", method="other", status="405") == 1
    assert not any(worker.wallet in str(labels) for _, labels in after)


# --- the fleet gauges ---------------------------------------------------------------------


def one_in_each_state(now) -> dict[str, list[str]]:
    """Workers stored in every state (collector/uptime/states.py), by state; ping_interval is
    30 s, the gap 30 minutes."""
    made: dict[str, list[str]] = {}

    def stored(state: str, **fields) -> None:
        wallet = FakeWorker().wallet
        Worker.create(wallet_address=wallet, **fields)
        made.setdefault(state, []).append(wallet)

    heard = {"last_heartbeat_at": now - timedelta(minutes=10)}
    stored("up", **heard, last_seen_at=now - timedelta(minutes=10), last_ping_at=now)
    stored("late", **heard, last_seen_at=now - timedelta(minutes=10))
    stored("degraded", **heard, last_seen_at=now, docker_available=False)
    stored("down", last_heartbeat_at=now - timedelta(minutes=31), last_ping_at=now)
    stored("never_seen", last_ping_at=now - timedelta(seconds=80))  # pings are no heartbeat
    stored("never_seen")
    return made


def test_the_gauges_count_the_workers_by_state_and_the_share_not_paid(client, dbconn, worker):
    assert worker.beat(client, minutes_ago(20)).status_code == 200  # arrives now: up
    now = utcnow()
    made = one_in_each_state(now)
    OpenWindow.create(worker=made["late"][0], start_time=now - timedelta(hours=2), end_time=now)
    samples = scrape(client)
    counts = {s: value(samples, "tassium_workers", state=s) for s in states.STATES}
    assert counts == {"up": 2, "late": 1, "degraded": 1, "down": 1, "never_seen": 2}
    # Of the 5 heard from, the degraded and the down are not paid.
    assert value(samples, "tassium_workers_unpaid_ratio") == pytest.approx(2 / 5)
    # Online as the API says it: a heartbeat within the gap.
    assert value(samples, "tassium_workers_online") == 4
    assert value(samples, "tassium_open_windows") == OpenWindow.select().count() == 2
    assert value(samples, "tassium_database_up") == 1
    # Opt-in only: no worker's own series by default.
    assert not any(name.startswith("tassium_worker_") for name, _ in samples)


def test_per_worker_series_are_opt_in_and_capped_with_the_unpaid_first(make_app, dbconn):
    now = utcnow()
    made = one_in_each_state(now)
    unpaid = sorted(made["degraded"] + made["down"] + made["never_seen"])

    samples = scrape(make_app(metrics_per_worker=4).test_client())

    shown = {
        dict(labels)["wallet"]: dict(labels)["state"]
        for (name, labels), v in samples.items()
        if name == "tassium_worker_state"
    }
    assert sorted(shown) == unpaid
    assert all(value(samples, "tassium_worker_paid", wallet=w) == 0 for w in unpaid)
    assert value(samples, "tassium_worker_series_truncated") == 1

    everyone = scrape(make_app(metrics_per_worker=100).test_client())
    paid = {
        dict(labels)["wallet"]: v
        for (name, labels), v in everyone.items()
        if name == "tassium_worker_paid"
    }
    assert paid == {w: 1.0 if s in ("up", "late") else 0.0 for s, ws in made.items() for w in ws}
    assert value(everyone, "tassium_worker_state", wallet=made["late"][0], state="late") == 1
    assert value(everyone, "tassium_worker_series_truncated") == 0


# --- the sweeper --------------------------------------------------------------------------


def test_a_sweep_pass_counts_itself_and_the_windows_it_closed(client, dbconn):
    first, second = FakeWorker(), FakeWorker()
    for fake in (first, second):
        Worker.create(wallet_address=fake.wallet)
    now = utcnow()
    for fake in (first, second):
        OpenWindow.create(
            worker=fake.wallet,
            start_time=now - timedelta(hours=3),
            end_time=now - timedelta(hours=2),
        )
    before = scrape(client)
    swept = sweep_pass(gap=timedelta(minutes=30), retention=timedelta(days=30), now=now)
    sweep_pass(gap=timedelta(minutes=30), retention=timedelta(days=30), now=now)
    after = scrape(client)
    assert swept.closed == 2
    runs, closed = "tassium_sweeper_runs_total", "tassium_sweeper_windows_closed_total"
    assert value(after, runs) - value(before, runs) == 2
    assert value(after, closed) - value(before, closed) == 2
    assert value(after, "tassium_open_windows") == 0


@GONE
def test_a_sweep_the_database_refused_is_a_database_error(make_app, tmp_path):
    client = make_app(database_url=f"sqlite:///{tmp_path / 'gone' / 'c.db'}").test_client()
    errors = "tassium_database_errors_total"
    before = value(scrape(client), errors, where="sweeper")
    thread = SweeperThread(
        gap=timedelta(minutes=30),
        retention=timedelta(days=30),
        interval=timedelta(minutes=10),
        clock=utcnow,
    )
    thread.start()
    try:
        wait_for(
            lambda: value(scrape(client), errors, where="sweeper") > before,
            "the sweeper counted the database it could not reach",
        )
    finally:
        thread.stop()
        thread.join()


# --- access -------------------------------------------------------------------------------


def test_private_pages_put_metrics_behind_the_api_token(make_app):
    client = make_app(api_token=API_TOKEN, private_pages=True).test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Basic")
    assert (
        client.get("/metrics", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    )
    scrape(client, Authorization=f"Bearer {API_TOKEN}")
    basic = base64.b64encode(f"prometheus:{API_TOKEN}".encode()).decode()
    scrape(client, Authorization=f"Basic {basic}")


def test_without_private_pages_metrics_are_open(make_app):
    scrape(make_app(api_token=API_TOKEN).test_client())


# --- served: several processes ------------------------------------------------------------


def per_process(directory: Path, kind: str) -> dict[int, Samples]:
    """Each serving process's own samples, read from its file as prometheus_client keeps it."""
    found = {}
    for path in directory.glob(f"{kind}_*.db"):
        metrics = MultiProcessCollector.merge([str(path)])
        pid = int(path.stem.rpartition("_")[2])
        found[pid] = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for metric in metrics
            for sample in metric.samples
        }
    return found


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"])  # about processes, not databases
def test_served_metrics_sum_every_process_whichever_answers(serve_collector, tmp_path, monkeypatch):
    """Each process's own file shows that both took heartbeats and both answered scrapes;
    every scrape shows the total sent."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where serve makes its metrics directory
    served = serve_collector(processes=2, require_signatures=False)
    (directory,) = tmp_path.glob("tassium-metrics-*")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700

    def send(_: int) -> int:
        body = json.dumps(FakeWorker().heartbeat_body()).encode()
        # A connection each, so that both processes take some.
        return httpx.post(
            served.url + "/heartbeat",
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=10,
        ).status_code

    sent = 0

    def both_took_some() -> bool:
        nonlocal sent
        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(send, range(16))) == {200}
        sent += 16
        counted = per_process(directory, "counter")
        return sum(1 for s in counted.values() if value(s, ACCEPTED) > 0) == 2

    wait_for(both_took_some, "both processes accepted heartbeats")
    counted = per_process(directory, "counter")
    assert sum(value(s, ACCEPTED) for s in counted.values()) == sent

    def answered_by_both() -> bool:
        samples = parse(httpx.get(served.url + "/metrics", timeout=10).text)
        assert value(samples, ACCEPTED) == sent
        assert value(samples, "tassium_workers_online") == sent
        timed = per_process(directory, "histogram")
        answers = [
            value(s, LATENCY, route="/metrics", method="GET", status="200") for s in timed.values()
        ]
        return sum(1 for n in answers if n > 0) == 2

    wait_for(answered_by_both, "both processes answered /metrics")
    served.stop(signal.SIGTERM)
    assert not directory.exists()
