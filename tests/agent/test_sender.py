"""Delivering heartbeats: what counts as delivered, what is refused for good, what is kept
for later; the backoff; proxy settings from the environment."""

import base64
import http.server
import json
import random
import select
import socket
import ssl
import threading
import time
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from agent import keys
from agent.clock import CollectorClock
from agent.errors import DeliveryError
from agent.sender import Backoff, Outcome, Sender
from collector.signatures import verify
from protocol.heartbeat import Heartbeat, encode_public_key
from protocol.times import format_timestamp, utcnow
from tests.agent.fake_collector import FakeCollector, Reply, accept_everything, collector_json
from tests.conftest import free_port
from tests.factories import agent_config, new_wallet

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def make_sender(
    url: str, tmp_path: Path, wallet: str | None = None, **settings
) -> tuple[Sender, str]:
    settings = {"connect_timeout": 2, "read_timeout": 5, **settings}
    config = agent_config(url, tmp_path, wallet=wallet or new_wallet(), **settings)
    key = keys.load(config.key_path) if config.key_path.exists() else keys.generate(config.key_path)
    return Sender(config, key, CollectorClock()), config.wallet


@pytest.fixture
def enrolled(serve_collector, tmp_path, agent_process):
    """A served collector and a sender whose key is enrolled there."""
    collector = serve_collector()
    agent = agent_process(collector.url, start=False)
    sender, _ = make_sender(collector.url, agent.state_dir, agent.wallet)
    yield sender, agent.wallet
    sender.close()


@pytest.fixture
def fake(tmp_path):
    """``fake(answer)``: a sender talking to a FakeCollector that answers with ``answer``."""
    made = []

    def make(answer, **settings) -> tuple[Sender, FakeCollector]:
        collector = FakeCollector(answer).__enter__()
        sender, _ = make_sender(collector.url, tmp_path, **settings)
        made.append((sender, collector))
        return sender, collector

    yield make
    for sender, collector in made:
        sender.close()
        collector.__exit__(None, None, None)


def body(wallet: str, ago: timedelta = timedelta(0)) -> bytes:
    return Heartbeat(wallet, utcnow() - ago).to_body()


def test_a_heartbeat_is_credited_and_its_replay_is_credited_as_already_stored(enrolled):
    sender, wallet = enrolled
    beat = body(wallet)
    assert sender.deliver(beat) == Outcome(200, "credited", "accepted")
    assert sender.deliver(beat) == Outcome(409, "credited", "already stored")


def test_a_heartbeat_the_collector_cannot_vouch_for_is_delivered_but_not_credited(enrolled):
    sender, wallet = enrolled
    # Taken an hour ago, while the collector was running: stored as evidence only.
    outcome = sender.deliver(body(wallet, timedelta(hours=1)))
    assert (outcome.status, outcome.verdict, outcome.settled) == (200, "uncredited", True)
    assert "not credited" in outcome.message
    assert sender.deliver(body(wallet)).verdict == "credited"


def test_a_heartbeat_older_than_the_last_accepted_one_is_refused_not_credited(enrolled):
    sender, wallet = enrolled
    older = body(wallet, timedelta(hours=2))
    assert sender.deliver(body(wallet)).verdict == "credited"
    outcome = sender.deliver(older)
    assert (outcome.status, outcome.verdict) == (409, "refused")


def test_a_heartbeat_older_than_the_backfill_is_refused_for_good(enrolled):
    sender, wallet = enrolled
    outcome = sender.deliver(body(wallet, timedelta(days=2)))
    assert (outcome.status, outcome.verdict) == (422, "refused")


def test_an_unenrolled_worker_is_kept_for_later_not_refused(serve_collector, tmp_path):
    sender, wallet = make_sender(serve_collector().url, tmp_path)
    outcome = sender.deliver(body(wallet))
    assert (outcome.status, outcome.verdict) == (404, "retry")
    assert "not enrolled" in outcome.message
    sender.close()


def test_an_unreachable_collector_is_a_delivery_error(tmp_path, backend):
    sender, wallet = make_sender(f"http://127.0.0.1:{free_port()}", tmp_path)
    with pytest.raises(DeliveryError):
        sender.deliver(body(wallet))
    sender.close()


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, "text/html", b"<html>Welcome to the hotel Wi-Fi</html>"),
        Reply(200, "application/json", b"{}"),
        Reply(200, "application/json", b'{"accepted": "yes"}'),
        Reply(409, "text/html", b"<html>conflict</html>"),
        Reply(422, "text/plain", b"unprocessable"),
        Reply(502, "text/html", b"bad gateway"),
    ],
    ids=["portal", "empty-json", "not-true", "html-409", "plain-422", "bad-gateway"],
)
def test_only_the_collectors_acknowledgement_credits_a_heartbeat(fake, reply, backend):
    sender, collector = fake(lambda request: reply)
    outcome = sender.deliver(body(new_wallet()))
    assert outcome.verdict == "retry" and not outcome.settled
    assert len(collector.requests) == 1


def test_a_trickled_answer_is_cut_at_the_deadline(fake, backend):
    # One byte every half second: each read is quick, the whole answer would take a minute.
    answer = Reply(200, body=b'{"accepted": true, "pad": "' + b"x" * 120 + b'"}', trickle=0.5)
    sender, _ = fake(lambda request: answer, send_timeout=2, read_timeout=5)
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="no whole answer within 2 s"):
        sender.deliver(body(new_wallet()))
    assert time.monotonic() - started < 20


def test_a_backlog_goes_in_batches_and_each_heartbeat_gets_its_verdict(fake, backend):
    def answer(request):
        if request.path != "/heartbeats":
            return collector_json(accepted=True)
        statuses = [200, 409, 422]
        results = [
            {"status": code, "accepted": True}
            if code == 200
            else {"status": code, "error": "no", "stored": False}
            for code, _ in zip(statuses, request.json()["heartbeats"], strict=False)
        ]
        return collector_json(results=results)

    sender, collector = fake(answer, batch_size=3)
    wallet = new_wallet()
    bodies = [body(wallet, timedelta(minutes=m)) for m in (5, 4, 3, 2, 1)]
    outcomes = sender.deliver_many(bodies)
    assert [o.verdict for o in outcomes] == ["credited", "refused", "refused"]
    assert [r.path for r in collector.requests] == ["/heartbeats"]
    sent = collector.requests[0].json()["heartbeats"]
    assert [e["body"].encode() for e in sent] == bodies[:3]
    # Each heartbeat is signed on its own, as the single route would want it.
    for entry in sent:
        verify(encode_public_key(sender.key), entry["body"].encode(), entry["signature"])
    # One heartbeat alone goes to the single route.
    assert len(sender.deliver_many(bodies[4:])) == 1
    assert collector.requests[-1].path == "/heartbeat"


def test_a_collector_without_the_batch_route_gets_one_heartbeat_at_a_time(fake, backend):
    def answer(request):
        if request.path == "/heartbeats":
            return collector_json(404, error="not found")
        return collector_json(accepted=True)

    sender, collector = fake(answer)
    wallet = new_wallet()
    bodies = [body(wallet, timedelta(minutes=m)) for m in (3, 2, 1)]
    assert [o.verdict for o in sender.deliver_many(bodies)] == ["credited"]
    assert [o.verdict for o in sender.deliver_many(bodies[1:])] == ["credited"]
    assert [r.path for r in collector.requests] == ["/heartbeats", "/heartbeat", "/heartbeat"]


def test_a_batch_refused_as_too_large_is_halved(fake, backend):
    def answer(request):
        if request.path == "/heartbeats" and len(request.json()["heartbeats"]) > 2:
            return collector_json(413, error="request body too large")
        return accept_everything(request)

    sender, collector = fake(answer, batch_size=8)
    wallet = new_wallet()
    bodies = [body(wallet, timedelta(minutes=m)) for m in range(8, 0, -1)]
    assert sender.deliver_many(bodies) == []
    assert sender.deliver_many(bodies) == []
    assert len(sender.deliver_many(bodies)) == 2
    assert sender.batch_size == 2


def test_a_batch_the_collector_did_not_take_is_a_delivery_error(fake, backend):
    sender, _ = fake(lambda request: collector_json(503, error="database unavailable"))
    wallet = new_wallet()
    with pytest.raises(DeliveryError, match="503: database unavailable"):
        sender.deliver_many([body(wallet, timedelta(minutes=2)), body(wallet)])


@pytest.mark.parametrize("source", ["serverTime", "Date"])
def test_the_collectors_clock_is_learned_from_its_answers(fake, source, backend):
    collector_time = utcnow() + timedelta(minutes=5)

    def answer(request):
        if source == "serverTime":
            return Reply(
                body=json.dumps(
                    {"accepted": True, "serverTime": format_timestamp(collector_time)}
                ).encode()
            )
        return Reply(
            body=b'{"accepted": true}',
            headers={"Date": format_datetime(collector_time, usegmt=True)},
        )

    sender, _ = fake(answer)
    assert sender.clock.offset is None
    sender.deliver(body(new_wallet()))
    assert 295 < sender.clock.offset < 305


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
        self.send_header("Content-Length", "18")
        self.end_headers()
        self.wfile.write(b'{"accepted": true}')

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
        assert sender.deliver(body(wallet)).verdict == "credited"
        sender.close()
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert RecordingProxy.seen == ["POST http://collector.invalid:8000/heartbeat HTTP/1.1"]


# --- HTTPS ---------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and its key, as PEM files: its own CA, as a private
    collector's certificate would be."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TunnellingProxy(http.server.BaseHTTPRequestHandler):
    """An HTTP proxy that only tunnels (CONNECT), as in front of an HTTPS collector."""

    seen: list[tuple[str, str | None]] = []

    def do_CONNECT(self):  # noqa: N802 - the stdlib's name
        TunnellingProxy.seen.append((self.requestline, self.headers.get("Proxy-Authorization")))
        host, _, port = self.path.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=5) as upstream:
            self.send_response(200)
            self.end_headers()
            ends = [self.connection, upstream]
            while True:
                readable, _, _ = select.select(ends, [], [], 5)
                chunks = [(end, end.recv(65536)) for end in readable]
                if not chunks or not all(chunk for _, chunk in chunks):
                    return
                for end, chunk in chunks:
                    (upstream if end is self.connection else self.connection).sendall(chunk)

    def log_message(self, *args):
        pass


def test_https_checks_the_certificate_and_goes_through_a_proxys_tunnel(
    tmp_path, monkeypatch, backend
):
    cert, key = self_signed(tmp_path)
    collector = FakeCollector(accept_everything)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    collector.server.socket = tls.wrap_socket(collector.server.socket, server_side=True)
    url = f"https://localhost:{collector.server.server_port}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TunnellingProxy)
    proxy.daemon_threads = True
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    with collector:
        # Not signed by a CA this machine trusts: refused, the heartbeat stays spooled.
        sender, wallet = make_sender(url, tmp_path)
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
            sender.deliver(body(wallet))
        # The owner names the collector's CA, as curl and OpenSSL read it.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        sender, wallet = make_sender(url, tmp_path)
        assert sender.deliver(body(wallet)).verdict == "credited"
        monkeypatch.setenv("HTTPS_PROXY", f"http://owner:s%40cret@127.0.0.1:{proxy.server_port}")
        sender, wallet = make_sender(url, tmp_path, wallet)
        assert sender.deliver(body(wallet)).verdict == "credited"
    proxy.shutdown()
    proxy.server_close()
    credentials = base64.b64encode(b"owner:s@cret").decode()
    assert TunnellingProxy.seen == [
        (f"CONNECT localhost:{collector.server.server_port} HTTP/1.0", f"Basic {credentials}")
    ]
    assert len(collector.heartbeats()) == 2
