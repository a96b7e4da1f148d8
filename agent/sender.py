"""Delivering heartbeats to the collector: what counts as an acknowledgement, the batch route
for backlogs, a deadline on every request, and the backoff between failures.

HTTP is one httpx client for the sender's life (the design's stack): its pool keeps the
connection alive between the pings and heartbeats, and it speaks HTTP/2 where the collector
offers it over TLS (ALPN), HTTP/1.1 otherwise. httpx has no deadline for a whole request, so
the answer is streamed and the deadline checked after every read (``request``).

Certificates are checked against ``ca_bundle`` when it is set, else against the system's
trust store, which OpenSSL reads with SSL_CERT_FILE and SSL_CERT_DIR naming others, as curl
does (httpx's own default, certifi's bundle, would ignore a CA the owner installed into the
system store), and against certifi's only on a system without a store.

Proxies: load_config captures HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY (agent/config.py
reads the environment once), so httpx's trust_env is off. httpx has no public way to apply
NO_PROXY, and its environment proxies verify an https:// proxy against certifi alone; the
collector being the one origin, the proxy for it is chosen once here (NO_PROXY by urllib's
public proxy_bypass_environment, the module httpx reads the variables with) and handed to
httpx with our TLS context."""

import json
import logging
import random
import ssl
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from agent.clock import CollectorClock
from agent.config import AgentConfig, Proxies
from agent.errors import DeliveryError
from agent.keys import AgentKey
from protocol import ProtocolError
from protocol.heartbeat import SIGNATURE_HEADER, sign
from protocol.times import parse_timestamp

log = logging.getLogger(__name__)

# What a worker without Docker must be told wherever it looks (once, status, the journal).
UNPAID = "its heartbeats count as downtime, and it is not paid, until Docker runs"
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
    # The collector's signed receipt for a credited heartbeat, as answered (its JSON), for
    # agent/receipts.py to check and keep; None when the answer carried none.
    receipt: object = field(default=None, compare=False, repr=False)
    # Stored, but counted as downtime: the heartbeat said Docker is unavailable.
    downtime: bool = field(default=False, compare=False)

    @property
    def settled(self) -> bool:
        """Whether the heartbeat leaves the spool: credited, or refused for good."""
        return self.verdict != "retry"


def judge(status: int, answer: object) -> Outcome:
    """The verdict on one heartbeat from the collector's JSON answer for it, with the
    receipt a credited one was answered with.

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
        if answer.get("action") == "docker_unavailable":
            said = f"stored, but Docker is not available on this machine: {UNPAID}"
            return Outcome(status, "credited", said, None, True)
        return Outcome(status, "credited", "accepted", answer.get("receipt"))
    if status == 409 and isinstance(error, str):
        if answer.get("stored", True) is True:
            return Outcome(status, "credited", "already stored")
        return Outcome(status, "refused", error)
    if status in PERMANENT and isinstance(error, str):
        return Outcome(status, "refused", error)
    return Outcome(status, "retry", f"collector answered {status}: {error or 'no reason given'}")


class Sender:
    def __init__(self, config: AgentConfig, key: AgentKey | None, clock: CollectorClock):
        self.key = key
        self.clock = clock
        self.deadline = config.send_timeout
        # Heartbeats per request; 1 (configured, or for good once the collector turned out
        # to lack the batch route) sends each to POST /heartbeat.
        self.batch_size = config.batch_size
        self.read_timeout = min(config.read_timeout, config.send_timeout)
        self.connect_timeout = min(config.connect_timeout, config.send_timeout)
        self.ca_bundle = config.ca_bundle
        tls = trust(config.ca_bundle)
        proxy = proxy_for(config.collector_url, config.proxies)
        self.proxy = None if proxy is None else _without_credentials(proxy)
        self.client = httpx.Client(
            base_url=config.collector_url,
            headers={"User-Agent": "tassium-agent"},
            verify=tls,
            http2=True,
            proxy=None if proxy is None else _proxy(proxy, tls),
            trust_env=False,
            follow_redirects=False,
            # Pings come every half minute: an idle connection is kept a little longer, so
            # the next one finds it (a collector closing it sooner costs only a reconnect).
            limits=httpx.Limits(
                max_connections=4, keepalive_expiry=max(60, config.ping_interval + 30)
            ),
        )

    # --- one request -----------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: bytes | None = None, deadline: float | None = None
    ) -> tuple[int, object]:
        """One request within the overall deadline; returns the status and the decoded JSON
        answer (None when it is not JSON). Learns the collector's clock from a JSON answer.
        Raises DeliveryError when no whole answer arrived in time."""
        headers = {}
        if body is not None and self.key is not None:
            headers[SIGNATURE_HEADER] = sign(self.key, body)
            headers["Content-Type"] = "application/json"
        limit = min(deadline or self.deadline, self.deadline)
        # A short deadline (a ping's) bounds the connection and each read too: a collector
        # that never answers must not hold it for the whole read_timeout.
        read_timeout = min(self.read_timeout, limit)
        timeout = httpx.Timeout(
            connect=min(self.connect_timeout, limit),
            read=read_timeout,
            write=read_timeout,
            pool=limit,
        )
        sent = self.clock.local()
        ends = time.monotonic() + limit
        what = f"{method} {path}"
        try:
            with self.client.stream(
                method, path, content=body, headers=headers, timeout=timeout
            ) as response:
                # read_timeout bounds each read, not the answer: a server trickling a byte
                # at a time would hold the agent for ever without this deadline.
                content = bytearray()
                for chunk in response.iter_bytes():
                    content += chunk
                    if time.monotonic() > ends:
                        raise DeliveryError(f"{what}: no whole answer within {limit:g} s")
                    if len(content) > MAX_ANSWER_BYTES:
                        raise DeliveryError(f"{what}: answer larger than a collector's")
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{what}: {self._explained(exc, timeout)}") from exc
        answer = _json(response, bytes(content))
        if isinstance(answer, dict):
            self._learn_time(answer, response, sent)
        return response.status_code, answer

    def _explained(self, exc: httpx.HTTPError, timeout: httpx.Timeout) -> str:
        """httpx's message, with what the owner can do about the usual causes."""
        text = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectTimeout):
            return f"no connection within {timeout.connect:g} s ({text})"
        if isinstance(exc, httpx.ReadTimeout):
            return f"no answer within {timeout.read:g} s ({text})"
        if isinstance(exc, httpx.ProxyError):
            return f"the proxy {self.proxy} refused to carry it: {text}"
        if "CERTIFICATE_VERIFY_FAILED" in text:
            trusted = (
                f"the CAs in ca_bundle {self.ca_bundle}"
                if self.ca_bundle
                else "this machine's trust store"
            )
            return (
                f"{text}: the certificate is not signed by {trusted}; "
                "set ca_bundle to the PEM file of the CA that signed it"
            )
        return text

    def _learn_time(self, answer: dict, response: httpx.Response, sent: float) -> None:
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
        """Close the pooled connections."""
        self.client.close()


def trust(ca_bundle) -> ssl.SSLContext:
    """The TLS context for the collector and for an https:// proxy."""
    if ca_bundle is not None:
        return ssl.create_default_context(cafile=str(ca_bundle))
    paths = ssl.get_default_verify_paths()
    if paths.cafile is None and paths.capath is None:
        import certifi  # httpx's dependency, for a system without a trust store

        return ssl.create_default_context(cafile=certifi.where())
    return ssl.create_default_context()


def proxy_for(url: str, proxies: Proxies) -> str | None:
    """The proxy URL for the collector at ``url``, or None for a direct connection."""
    scheme = urlsplit(url).scheme
    chosen = (proxies.https if scheme == "https" else proxies.http) or proxies.all
    if not chosen:
        return None
    if proxies.no:
        from urllib.request import proxy_bypass_environment  # loaded by httpx already

        host = urlsplit(url).netloc.rpartition("@")[2]
        if proxy_bypass_environment(host, {"no": proxies.no}):
            return None
    return chosen if "://" in chosen else f"http://{chosen}"


def _proxy(url: str, tls: ssl.SSLContext) -> httpx.Proxy:
    if urlsplit(url).scheme == "https":
        # Spoken to over TLS, its certificate checked as the collector's is.
        return httpx.Proxy(url, ssl_context=tls)
    return httpx.Proxy(url)


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _json(response: httpx.Response, content: bytes) -> object:
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
