"""Delivering heartbeats to the collector with httpx: what counts as an acknowledgement, the
batch route for backlogs, a deadline on every request, and the backoff between failures."""

import json
import logging
import random
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import httpx
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
    verdict: str  # credited | refused | retry
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
        # trust_env: HTTPS_PROXY / NO_PROXY from the environment are honoured.
        self.client = httpx.Client(
            base_url=config.collector_url,
            timeout=httpx.Timeout(
                min(config.read_timeout, config.send_timeout),
                connect=min(config.connect_timeout, config.send_timeout),
            ),
            trust_env=True,
            headers={"User-Agent": "tassium-agent"},
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
            headers = {SIGNATURE_HEADER: sign(self.key, body), "Content-Type": "application/json"}
        limit = min(deadline or self.deadline, self.deadline)
        timeout = self.client.timeout
        if limit < self.deadline:
            # A short deadline (a ping's) bounds the connection and each read too: a
            # collector that never answers must not hold it for the whole read_timeout.
            timeout = httpx.Timeout(min(timeout.read, limit), connect=min(timeout.connect, limit))
        sent = self.clock.local()
        ends = time.monotonic() + limit
        with (
            translated({httpx.HTTPError: DeliveryError}, f"{method} {path}"),
            self.client.stream(
                method, path, content=body, headers=headers, timeout=timeout
            ) as response,
        ):
            # read_timeout bounds each read, not the answer: a server trickling a byte at
            # a time would hold the agent for ever without this deadline.
            content = bytearray()
            for chunk in response.iter_bytes():
                content += chunk
                if time.monotonic() > ends:
                    raise DeliveryError(f"{method} {path}: no whole answer within {limit:g} s")
                if len(content) > MAX_ANSWER_BYTES:
                    raise DeliveryError(f"{method} {path}: answer larger than a collector's")
        answer = _json(response, bytes(content))
        if isinstance(answer, dict):
            self._learn_time(answer, response, sent)
        return response.status_code, answer

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
        self.client.close()


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
