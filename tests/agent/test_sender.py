"""Delivering heartbeats: what counts as delivered, what is refused for good, what is kept
for later; the backoff; one kept-alive connection, the whole-request deadline, certificates
against a CA bundle, proxies from the environment, HTTP/2."""

import base64
import datetime as dt
import http.client
import http.server
import json
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent import keys
from agent.clock import CollectorClock
from agent.config import load_config
from agent.errors import DeliveryError
from agent.sender import Backoff, Outcome, Sender
from collector.identity.signatures import verify
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


def test_a_short_deadline_bounds_each_read_of_a_silent_collector(fake, backend):
    sender, _ = fake(lambda request: Reply(delay=4, body=b'{"accepted": true}'), read_timeout=5)
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="POST /heartbeat/ping: no answer within 1 s"):
        sender.request("POST", "/heartbeat/ping", b"{}", deadline=1)
    assert time.monotonic() - started < 3


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


def test_requests_share_one_kept_alive_connection(fake, backend):
    sender, collector = fake(accept_everything)
    wallet = new_wallet()
    for ago in (3, 2, 1):
        assert sender.deliver(body(wallet, timedelta(minutes=ago))).verdict == "credited"
    sender.request("GET", "/healthz")
    assert len(collector.requests) == 4
    assert collector.connections == 1


def test_an_answer_cut_at_the_deadline_does_not_spoil_the_next_request(fake, backend):
    trickled = Reply(200, body=b'{"accepted": true, "pad": "' + b"x" * 60 + b'"}', trickle=0.5)
    replies = iter([trickled, collector_json(accepted=True)])
    sender, collector = fake(lambda request: next(replies), send_timeout=1)
    with pytest.raises(DeliveryError, match="no whole answer within 1 s"):
        sender.deliver(body(new_wallet()))
    # The half-read connection was dropped, not put back in the pool for the next request.
    assert sender.deliver(body(new_wallet())).verdict == "credited"
    assert collector.connections == 2


# --- HTTPS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory) -> tuple[Path, ssl.SSLContext]:
    """A private CA's certificate as a PEM file (beside it chain.pem and key.pem), and a
    server context holding the certificate it signed for localhost: a private collector's
    (or proxy's) setup."""
    directory = tmp_path_factory.mktemp("ca")
    now = dt.datetime.now(dt.UTC)

    def certificate(subject, key, issuer, issuer_key, *extensions):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                critical=False,
            )
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    usage = dict.fromkeys(
        ["content_commitment", "key_encipherment", "data_encipherment", "key_agreement"], False
    )
    ca = certificate(
        "Tassium test CA",
        ca_key,
        "Tassium test CA",
        ca_key,
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
                **usage,
            ),
            True,
        ),
    )
    leaf = certificate(
        "localhost",
        key,
        "Tassium test CA",
        ca_key,
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (
            x509.SubjectAlternativeName([x509.DNSName("localhost")]),
            False,
        ),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
    )
    ca_path, chain, key_path = (directory / n for n in ("ca.pem", "chain.pem", "key.pem"))
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(chain, key_path)
    return ca_path, server


def test_https_is_accepted_with_the_ca_bundle_and_refused_without_it(
    tmp_path, test_ca, monkeypatch, backend
):
    ca, server = test_ca
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with FakeCollector(tls=server) as collector:
        # Not signed by a CA this machine trusts: refused, the heartbeat stays spooled.
        sender, wallet = make_sender(collector.url, tmp_path)
        with pytest.raises(DeliveryError) as refused:
            sender.deliver(body(wallet))
        sender.close()
        assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
        assert "set ca_bundle to the PEM file of the CA that signed it" in str(refused.value)
        assert collector.requests == []

        sender, wallet = make_sender(collector.url, tmp_path, ca_bundle=ca)
        for ago in (2, 1):
            assert sender.deliver(body(wallet, timedelta(minutes=ago))).verdict == "credited"
        sender.close()
        # The owner may name the CA as curl and OpenSSL read it, too.
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        sender, wallet = make_sender(collector.url, tmp_path, wallet)
        assert sender.deliver(body(wallet)).verdict == "credited"
        sender.close()
    # Kept alive over TLS as well: one handshake for the first sender's two heartbeats.
    assert collector.connections == 2
    assert len(collector.heartbeats()) == 3


def test_a_ca_bundle_is_not_trusted_for_another_name(tmp_path, test_ca, backend):
    ca, server = test_ca
    with FakeCollector(tls=server) as collector:
        url = collector.url.replace("localhost", "127.0.0.1")
        sender, wallet = make_sender(url, tmp_path, ca_bundle=ca)
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
            sender.deliver(body(wallet))
        sender.close()


# --- proxies -------------------------------------------------------------------------------


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    """A proxy as an office runs one: it forwards plain HTTP requests (the whole URL in the
    request line) and tunnels HTTPS (CONNECT). ``seen`` collects what it was asked."""

    seen: list[tuple[str, str | None]]

    def do_POST(self):  # noqa: N802 - the stdlib's name
        self.seen.append((self.requestline, self.headers.get("Proxy-Authorization")))
        target = urlsplit(self.path)
        upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=5)
        content = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        forwarded = {k: v for k, v in self.headers.items() if not k.lower().startswith("proxy-")}
        upstream.request("POST", target.path, content, forwarded)
        answer = upstream.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for name in ("Content-Type", "Date"):
            self.send_header(name, answer.headers[name])
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    def do_CONNECT(self):  # noqa: N802 - the stdlib's name
        self.seen.append((self.requestline, self.headers.get("Proxy-Authorization")))
        host, _, port = self.path.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=5) as upstream:
            self.send_response(200)
            self.end_headers()
            ends = [self.connection, upstream]
            while True:
                readable, _, _ = select.select(ends, [], [], 5)
                # A TLS socket may hold decrypted bytes select() cannot see.
                if isinstance(self.connection, ssl.SSLSocket) and self.connection.pending():
                    readable = list({*readable, self.connection})
                chunks = [(end, end.recv(65536)) for end in readable]
                if not chunks or not all(chunk for _, chunk in chunks):
                    return
                for end, chunk in chunks:
                    (upstream if end is self.connection else self.connection).sendall(chunk)

    def log_message(self, *args):
        pass


@contextmanager
def proxy_server(tls: ssl.SSLContext | None = None) -> Iterator[tuple[str, list]]:
    """A running proxy's URL (https:// when it speaks TLS) and the list of what it saw."""
    seen: list[tuple[str, str | None]] = []
    handler = type("Handler", (ProxyHandler,), {"seen": seen})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    proxy.daemon_threads = True
    url = f"http://127.0.0.1:{proxy.server_port}"
    if tls is not None:
        proxy.socket = tls.wrap_socket(proxy.socket, server_side=True)
        url = f"https://localhost:{proxy.server_port}"
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        yield url, seen
    finally:
        proxy.shutdown()
        proxy.server_close()


def configured(tmp_path: Path, url: str, environ: dict[str, str]) -> tuple[Sender, str]:
    """A sender as the agent makes one: its settings, proxies included, read by load_config
    from a file and this environment."""
    path = tmp_path / "agent.yaml"
    settings = {"collector_url": url, "wallet": new_wallet(), "state_dir": str(tmp_path)}
    path.write_text(json.dumps({**settings, "connect_timeout": 2, "read_timeout": 5}))
    config = load_config(path, environ)
    key = keys.load(config.key_path) if config.key_path.exists() else keys.generate(config.key_path)
    return Sender(config, key, CollectorClock()), config.wallet


def test_a_plain_proxy_from_the_environment_carries_the_request(tmp_path, backend):
    with FakeCollector() as collector, proxy_server() as (proxy, seen):
        sender, wallet = configured(tmp_path, collector.url, {"http_proxy": proxy})
        assert sender.deliver(body(wallet)).verdict == "credited"
        sender.close()
    assert seen == [(f"POST {collector.url}/heartbeat HTTP/1.1", None)]
    assert len(collector.heartbeats()) == 1


def test_https_goes_through_a_proxys_tunnel_with_its_credentials(tmp_path, test_ca, backend):
    ca, server = test_ca
    with FakeCollector(tls=server) as collector, proxy_server() as (proxy, seen):
        authorized = proxy.replace("http://", "http://owner:s%40cret@")
        environ = {"HTTPS_PROXY": authorized, "TASSIUM_CA_BUNDLE": str(ca)}
        sender, wallet = configured(tmp_path, collector.url, environ)
        for ago in (2, 1):
            beat = body(wallet, timedelta(minutes=ago))
            assert sender.deliver(beat).verdict == "credited"
        sender.close()
    credentials = base64.b64encode(b"owner:s@cret").decode()
    port = urlsplit(collector.url).port
    # One tunnel for both heartbeats, kept alive.
    assert seen == [(f"CONNECT localhost:{port} HTTP/1.1", f"Basic {credentials}")]
    assert len(collector.heartbeats()) == 2


@pytest.mark.parametrize("collector_scheme", ["http", "https"])
def test_an_https_proxy_is_spoken_to_over_tls(tmp_path, test_ca, collector_scheme, backend):
    ca, server = test_ca
    tls = server if collector_scheme == "https" else None
    with FakeCollector(tls=tls) as collector, proxy_server(server) as (proxy, seen):
        assert proxy.startswith("https://")
        environ = {"ALL_PROXY": proxy, "TASSIUM_CA_BUNDLE": str(ca)}
        sender, wallet = configured(tmp_path, collector.url, environ)
        assert sender.deliver(body(wallet)).verdict == "credited"
        sender.close()
    assert [line.split()[0] for line, _ in seen] == [
        "CONNECT" if collector_scheme == "https" else "POST"
    ]
    assert len(collector.heartbeats()) == 1


def test_an_https_proxy_with_an_untrusted_certificate_is_refused(tmp_path, test_ca, backend):
    _, server = test_ca
    with FakeCollector() as collector, proxy_server(server) as (proxy, seen):
        sender, wallet = configured(tmp_path, collector.url, {"HTTP_PROXY": proxy})
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
            sender.deliver(body(wallet))
        sender.close()
    assert seen == [] and collector.requests == []


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.1:0,127.0.0.1", "*"])
def test_no_proxy_sends_the_collector_past_the_proxy(tmp_path, no_proxy, backend):
    with FakeCollector() as collector, proxy_server() as (proxy, seen):
        environ = {"HTTP_PROXY": proxy, "NO_PROXY": no_proxy}
        sender, wallet = configured(tmp_path, collector.url, environ)
        assert sender.deliver(body(wallet)).verdict == "credited"
        sender.close()
        # The same proxy is used for a collector NO_PROXY does not name.
        sender, wallet = configured(
            tmp_path, collector.url, {"HTTP_PROXY": proxy, "NO_PROXY": "other"}
        )
        assert sender.deliver(body(wallet)).verdict == "credited"
        sender.close()
    assert [line.split()[0] for line, _ in seen] == ["POST"]
    assert len(collector.heartbeats()) == 2


# --- HTTP/2 --------------------------------------------------------------------------------


@contextmanager
def h2_collector(ca: Path) -> Iterator[tuple[str, list[dict]]]:
    """A collector that speaks only HTTP/2 (offered by ALPN, as a TLS front does): its URL
    and the requests' headers, one connection at a time. No HTTP/2 server is installed
    here; h2 (httpx's own HTTP/2 engine) serves with a few lines."""
    import h2.config
    import h2.connection
    import h2.events

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(ca.parent / "chain.pem", ca.parent / "key.pem")
    context.set_alpn_protocols(["h2"])
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[dict] = []

    def serve():
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            with context.wrap_socket(raw, server_side=True) as tls:
                if tls.selected_alpn_protocol() != "h2":
                    continue
                connection = h2.connection.H2Connection(
                    h2.config.H2Configuration(client_side=False)
                )
                connection.initiate_connection()
                tls.sendall(connection.data_to_send())
                while data := tls.recv(65536):
                    for event in connection.receive_data(data):
                        if isinstance(event, h2.events.RequestReceived):
                            seen.append({k.decode(): v.decode() for k, v in event.headers})
                        elif isinstance(event, h2.events.DataReceived):
                            connection.acknowledge_received_data(
                                event.flow_controlled_length, event.stream_id
                            )
                        elif isinstance(event, h2.events.StreamEnded):
                            answer = json.dumps(
                                {"accepted": True, "serverTime": format_timestamp(utcnow())}
                            ).encode()
                            connection.send_headers(
                                event.stream_id,
                                [
                                    (":status", "200"),
                                    ("content-type", "application/json"),
                                    ("content-length", str(len(answer))),
                                ],
                            )
                            connection.send_data(event.stream_id, answer, end_stream=True)
                    tls.sendall(connection.data_to_send())

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"https://localhost:{listener.getsockname()[1]}", seen
    finally:
        listener.close()


def test_http2_is_spoken_where_the_collector_offers_it(tmp_path, test_ca, backend):
    ca, _ = test_ca
    with h2_collector(ca) as (url, seen):
        sender, wallet = make_sender(url, tmp_path, ca_bundle=ca)
        for ago in (2, 1):
            assert sender.deliver(body(wallet, timedelta(minutes=ago))).verdict == "credited"
        sender.close()
    assert [(h[":method"], h[":path"]) for h in seen] == [("POST", "/heartbeat")] * 2
    assert all("x-tassium-signature" in h for h in seen)
