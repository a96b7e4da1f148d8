"""Delivering heartbeats to the collector: what counts as an acknowledgement, the batch route
for backlogs, a deadline on every request, and the backoff between failures.

HTTP is the standard library's http.client, a connection per request (a heartbeat every few
minutes, a ping every half minute): httpx and what it loads cost the daemon about 10 MB of
resident memory. HTTPS checks the collector's certificate against the system's trust store
(SSL_CERT_FILE and SSL_CERT_DIR name others), and HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and
NO_PROXY are honoured as curl and httpx honour them."""

import base64
import http.client
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import SplitResult, unquote, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.clock import CollectorClock
from agent.config import AgentConfig
from agent.errors import DeliveryError, translated
from protocol import ProtocolError
from protocol.heartbeat import SIGNATURE_HEADER, sign
from protocol.times import parse_timestamp

log = logging.getLogger(__name__)

# Refusals that no retry can cure: the collector read the heartbeat and judged the body
# itself wrong or out of range. Everything else (5xx, 401/404 before enrollment) is retried.
PERMANENT = {400, 413, 422}
# Far more than any collector answer; a bigger one is not from a collector.
MAX_ANSWER_BYTES = 1024 * 1024
# A batch stays well below the collector's default body limit (256 KiB).
MAX_BATCH_BYTES = 192 * 1024


@dataclass(frozen=True)
class Outcome:
    """What the collector said about one heartbeat."""

    status: int
    verdict: str  # credited | uncredited (stored as evidence only) | refused | retry
    message: str

    @property
    def settled(self) -> bool:
        """Whether the heartbeat leaves the spool: credited, or refused for good."""
        return self.verdict != "retry"


def judge(status: int, answer: object) -> Outcome:
    """The verdict on one heartbeat from the collector's JSON answer for it.

    Only the collector's own acknowledgement credits a heartbeat: ``accepted: true``, or a
    409 saying it is already stored (collectors before ``stored`` existed meant that by
    every 409). A proxy's or a captive portal's 200 is no acknowledgement."""
    if not isinstance(answer, dict):
        return Outcome(status, "retry", _not_an_answer(status))
    error = answer.get("error")
    if status == 200 and answer.get("accepted") is True:
        if answer.get("credited") is False:
            return Outcome(
                status,
                "uncredited",
                "stored, not credited: the collector cannot vouch for its time (taken before "
                "this worker enrolled, or delivered late while the collector was running)",
            )
        return Outcome(status, "credited", "accepted")
    if status == 409 and isinstance(error, str):
        if answer.get("stored", True) is True:
            return Outcome(status, "credited", "already stored")
        return Outcome(status, "refused", error)
    if status in PERMANENT and isinstance(error, str):
        return Outcome(status, "refused", error)
    return Outcome(status, "retry", f"collector answered {status}: {error or 'no reason given'}")


class Sender:
    def __init__(self, config: AgentConfig, key: Ed25519PrivateKey | None, clock: CollectorClock):
        self.key = key
        self.clock = clock
        self.deadline = config.send_timeout
        # Heartbeats per request; 1 (configured, or for good once the collector turned out
        # to lack the batch route) sends each to POST /heartbeat.
        self.batch_size = config.batch_size
        self.read_timeout = min(config.read_timeout, config.send_timeout)
        self.connect_timeout = min(config.connect_timeout, config.send_timeout)
        url = urlsplit(config.collector_url)
        self.https = url.scheme == "https"
        self.netloc = url.netloc
        host = url.hostname or ""
        self.tunnel = (f"[{host}]" if ":" in host else host, url.port or 443)
        self.base_path = url.path.rstrip("/")
        self.proxy = _proxy_for(url.scheme, host)
        self._tls = None
        if self.https or (self.proxy is not None and self.proxy.scheme == "https"):
            import ssl  # loaded by http.client already; named here for the context

            self._tls = ssl.create_default_context()

    def _connection(self, connect_timeout: float) -> tuple[http.client.HTTPConnection, dict]:
        """A new connection to the collector, or to the proxy on the way, and the headers the
        proxy needs on each request."""
        if self.proxy is None:
            return self._open(self.https, self.netloc, connect_timeout), {}
        proxy, authorization = self.proxy, {}
        if proxy.username is not None:
            secret = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
            credentials = base64.b64encode(secret.encode()).decode()
            authorization = {"Proxy-Authorization": f"Basic {credentials}"}
        address = proxy.netloc.rpartition("@")[2]
        if self.https:
            # A CONNECT tunnel through the proxy (spoken in the clear, as curl does with an
            # http:// proxy), then TLS end to end with the collector inside it.
            connection = self._open(True, address, connect_timeout)
            connection.set_tunnel(*self.tunnel, headers=authorization)
            return connection, {}
        return self._open(proxy.scheme == "https", address, connect_timeout), authorization

    def _open(self, https: bool, netloc: str, timeout: float) -> http.client.HTTPConnection:
        if https:
            return http.client.HTTPSConnection(netloc, timeout=timeout, context=self._tls)
        return http.client.HTTPConnection(netloc, timeout=timeout)

    # --- one request -----------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: bytes | None = None, deadline: float | None = None
    ) -> tuple[int, object]:
        """One request within the overall deadline; returns the status and the decoded JSON
        answer (None when it is not JSON). Learns the collector's clock from a JSON answer.
        Raises DeliveryError when no whole answer arrived in time."""
        headers = {"User-Agent": "tassium-agent"}
        if body is not None and self.key is not None:
            headers[SIGNATURE_HEADER] = sign(self.key, body)
            headers["Content-Type"] = "application/json"
        limit = min(deadline or self.deadline, self.deadline)
        # A short deadline (a ping's) bounds the connection and each read too: a collector
        # that never answers must not hold it for the whole read_timeout.
        connect_timeout = min(self.connect_timeout, limit)
        read_timeout = min(self.read_timeout, limit)
        sent = self.clock.local()
        ends = time.monotonic() + limit
        connection, proxy_headers = self._connection(connect_timeout)
        target = self.base_path + path
        if self.proxy is not None and not self.https:
            target = f"http://{self.netloc}{target}"  # a plain proxy takes the whole URL
        try:
            with translated(_HTTP_ERRORS, f"{method} {path}"):
                connection.connect()
                connection.sock.settimeout(read_timeout)
                connection.request(method, target, body, {**headers, **proxy_headers})
                response = connection.getresponse()
                # read_timeout bounds each read, not the answer: a server trickling a byte
                # at a time would hold the agent for ever without this deadline.
                content = bytearray()
                while chunk := response.read1(65536):
                    content += chunk
                    if time.monotonic() > ends:
                        raise DeliveryError(f"{method} {path}: no whole answer within {limit:g} s")
                    if len(content) > MAX_ANSWER_BYTES:
                        raise DeliveryError(f"{method} {path}: answer larger than a collector's")
        finally:
            connection.close()
        answer = _json(response, bytes(content))
        if isinstance(answer, dict):
            self._learn_time(answer, response, sent)
        return response.status, answer

    def _learn_time(self, answer: dict, response: http.client.HTTPResponse, sent: float) -> None:
        received = self.clock.local()
        try:
            server_time = parse_timestamp(answer.get("serverTime"))
        except ProtocolError:
            try:  # a collector from before serverTime: the Date header, in whole seconds
                server_time = parsedate_to_datetime(response.headers.get("Date", ""))
            except (TypeError, ValueError):
                return
            if server_time.tzinfo is None:
                return
        self.clock.observe(server_time, sent, received)

    def post_signed(self, path: str, body: bytes) -> tuple[int, object]:
        return self.request("POST", path, body)

    # --- heartbeats ------------------------------------------------------------------------

    def deliver(self, body: bytes) -> Outcome:
        """Send one heartbeat. Raises DeliveryError when the request itself failed."""
        return judge(*self.post_signed("/heartbeat", body))

    def batch(self, bodies: list[bytes]) -> list[bytes]:
        """The leading part of ``bodies`` that goes in one batch request."""
        size, count = 0, 0
        for body in bodies[: self.batch_size]:
            size += len(body) + 128  # the signature and the JSON around it
            if count and size > MAX_BATCH_BYTES:
                break
            count += 1
        return bodies[:count]

    def deliver_many(self, bodies: list[bytes]) -> list[Outcome]:
        """Send the first heartbeats of ``bodies`` oldest first, several per request when
        the collector has the batch route; returns one outcome per heartbeat sent."""
        if self.batch_size == 1 or len(bodies) == 1:
            return [self.deliver(bodies[0])]
        chosen = self.batch(bodies)
        entries = [{"body": b.decode("utf-8"), "signature": sign(self.key, b)} for b in chosen]
        envelope = json.dumps({"heartbeats": entries}, separators=(",", ":")).encode()
        status, answer = self.request("POST", "/heartbeats", envelope)
        if status in (404, 405):
            log.info(
                "the collector has no batch route (%d): sending one heartbeat at a time", status
            )
            self.batch_size = 1
            return [self.deliver(bodies[0])]
        if status == 413:
            self.batch_size = max(1, self.batch_size // 2)
            log.warning(
                "the collector refused a batch as too large: batches of %d from now on",
                self.batch_size,
            )
            return []
        results = answer.get("results") if isinstance(answer, dict) else None
        if status != 200 or not isinstance(results, list) or len(results) != len(chosen):
            # The batch as a whole was not taken (database down, not enrolled, a proxy):
            # every heartbeat in it stays spooled.
            verdict = judge(status, answer if status != 200 else None)
            raise DeliveryError(verdict.message)
        return [
            judge(result.get("status"), result) if isinstance(result, dict) else judge(0, None)
            for result in results
        ]

    def close(self) -> None:
        """Nothing stays open between requests; kept for the callers' symmetry."""


# OSError covers refused and reset connections, timeouts and TLS failures.
_HTTP_ERRORS = {OSError: DeliveryError, http.client.HTTPException: DeliveryError}


def _proxy_for(scheme: str, host: str) -> SplitResult | None:
    """The proxy the environment names for the collector (HTTP_PROXY, HTTPS_PROXY,
    ALL_PROXY, NO_PROXY, upper or lower case, as urllib reads them), or None."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None  # the usual case, without loading urllib.request
    from urllib.request import getproxies_environment, proxy_bypass_environment

    proxies = getproxies_environment()
    url = proxies.get(scheme) or proxies.get("all")
    if not url or proxy_bypass_environment(host, proxies):
        return None
    if "://" not in url:
        url = "http://" + url
    return urlsplit(url)


def _json(response: http.client.HTTPResponse, content: bytes) -> object:
    if response.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
        return None
    try:
        return json.loads(content)
    except ValueError:
        return None


def _not_an_answer(status: int) -> str:
    return (
        f"answer {status} is not the collector's acknowledgement (a proxy, a captive portal or "
        "the wrong address?): the heartbeats stay spooled"
    )


@dataclass
class Backoff:
    """Exponential backoff with full jitter between base and the cap."""

    base: float
    cap: float
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def failed(self) -> float:
        """Record a failure; return how long to wait before the next attempt."""
        self.failures += 1
        ceiling = min(self.cap, self.base * 2 ** (self.failures - 1))
        return self.rng.uniform(ceiling / 2, ceiling)

    def succeeded(self) -> None:
        self.failures = 0
