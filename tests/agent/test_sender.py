"""Delivering heartbeats: what counts as delivered, what is refused for good, what is kept
for later; the backoff; proxy settings from the environment."""

import http.server
import random
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from agent import keys
from agent.config import AgentConfig
from agent.errors import DeliveryError, Rejected
from agent.sender import Backoff, Sender
from protocol.heartbeat import Heartbeat
from protocol.times import utcnow
from tests.conftest import free_port
from tests.factories import new_wallet

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def make_sender(url: str, tmp_path: Path, wallet: str | None = None) -> tuple[Sender, str]:
    wallet = wallet or new_wallet()
    config = AgentConfig(
        collector_url=url,
        wallet=wallet,
        state_dir=tmp_path,
        key_path=tmp_path / "agent.key",
        spool_path=tmp_path / "spool",
        connect_timeout=2,
        read_timeout=5,
    )
    key = keys.load(config.key_path) if config.key_path.exists() else keys.generate(config.key_path)
    return Sender(config, key), wallet


@pytest.fixture
def enrolled(serve_collector, tmp_path, agent_process):
    """A served collector and a sender whose key is enrolled there."""
    collector = serve_collector()
    agent = agent_process(collector.url, start=False)
    sender, _ = make_sender(collector.url, agent.state_dir, agent.wallet)
    yield sender, agent.wallet
    sender.close()


def body(wallet: str, ago: timedelta = timedelta(0)) -> bytes:
    return Heartbeat(wallet, utcnow() - ago).to_body()


def test_a_heartbeat_is_delivered_and_its_replay_counts_as_delivered(enrolled):
    sender, wallet = enrolled
    beat = body(wallet)
    assert sender.deliver(beat) == 200
    assert sender.deliver(beat) == 409


def test_a_heartbeat_older_than_the_backfill_is_refused_for_good(enrolled):
    sender, wallet = enrolled
    with pytest.raises(Rejected) as refused:
        sender.deliver(body(wallet, timedelta(days=2)))
    assert refused.value.status == 422


def test_an_unenrolled_worker_is_kept_for_later_not_refused(serve_collector, tmp_path):
    sender, wallet = make_sender(serve_collector().url, tmp_path)
    with pytest.raises(DeliveryError) as failed:
        sender.deliver(body(wallet))
    assert not isinstance(failed.value, Rejected) and "404" in str(failed.value)
    sender.close()


def test_an_unreachable_collector_is_a_delivery_error(tmp_path, backend):
    sender, wallet = make_sender(f"http://127.0.0.1:{free_port()}", tmp_path)
    with pytest.raises(DeliveryError):
        sender.deliver(body(wallet))
    sender.close()


def test_the_backoff_doubles_within_jitter_up_to_the_cap_and_resets(backend):
    backoff = Backoff(base=1, cap=8, rng=random.Random(7))
    delays = [backoff.failed() for _ in range(6)]
    for delay, ceiling in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.succeeded()
    assert backoff.failed() <= 1


class RecordingProxy(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_POST(self):  # noqa: N802 - the stdlib's name
        RecordingProxy.seen.append(self.requestline)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_proxy_settings_from_the_environment_are_honoured(tmp_path, monkeypatch, backend):
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RecordingProxy)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        sender, wallet = make_sender("http://collector.invalid:8000", tmp_path)
        assert sender.deliver(body(wallet)) == 200
        sender.close()
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert RecordingProxy.seen == ["POST http://collector.invalid:8000/heartbeat HTTP/1.1"]
