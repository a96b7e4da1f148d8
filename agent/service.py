"""The agent's work, in two independent halves so that neither can starve the other:

- ``take()`` collects the containers, stamps a heartbeat on the collector's clock and writes
  it to the spool (or holds it in memory while the spool cannot be written);
- ``drain()`` delivers what waits, oldest first, in batches when there is a backlog, each
  request within its deadline and each drain within a time bound.

``run()`` runs both as APScheduler jobs (agent/schedule.py), each on a thread of its own: a
heartbeat on the interval, a drain every few seconds and at once after each heartbeat; the
systemd watchdog is pinged only while both halves make progress.
"""

import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from agent import status
from agent.clock import CollectorClock
from agent.config import AgentConfig
from agent.containers import ContainerStats, survey
from agent.engine import Engine
from agent.errors import DeliveryError, DockerUnavailable
from agent.keys import AgentKey
from agent.machine import Machine, tailscale_ip
from agent.receipts import ReceiptStore
from agent.sender import Backoff, Outcome, Sender
from agent.spool import Entry, Spool
from agent.systemd import Notifier
from protocol.heartbeat import AgentInfo, Heartbeat, Ping, listed

log = logging.getLogger(__name__)

# One drain delivers for at most this long, then lets the loop look at the clock again.
DRAIN_SECONDS = 60.0
# Reading the collector's clock at start is worth a short wait, not a long start-up.
SYNC_SECONDS = 10.0
# How long a stop waits for a job in progress (a delivery, a heartbeat, a ping): well within
# systemd's TimeoutStopSec, after which the agent exits without it.
STOP_SECONDS = 10.0
# A ping's whole request, at most (and at most its interval): a collector answers one in
# milliseconds, and a ping held longer is news no one can use.
PING_SECONDS = 10.0


def agent_version() -> str:
    try:
        return version("tassium")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class DrainReport:
    credited: int
    refused: int
    pending: int
    error: str | None = None
    watched: Outcome | None = None  # the verdict on the heartbeat drain() was asked to watch


@dataclass(frozen=True)
class TickReport:
    heartbeat: Heartbeat
    drain: DrainReport


class Trouble:
    """A problem is logged when it starts or changes, and once when it ends: not on every
    try, which during an outage would be thousands of identical lines."""

    def __init__(self, recovered: str):
        self.current: str | None = None
        self.recovered = recovered

    def report(self, message: str, level: int = logging.WARNING) -> None:
        if message != self.current:
            log.log(level, "%s", message)
            self.current = message

    def clear(self) -> None:
        if self.current is not None:
            log.info("%s", self.recovered)
            self.current = None


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        key: AgentKey,
        clock: CollectorClock | None = None,
    ):
        self.config = config
        self.clock = clock or CollectorClock(status.saved_offset(config))
        self.sender = Sender(config, key, self.clock)
        self.backoff = Backoff(config.retry_base, config.retry_max)
        self.retry_at: float | None = None  # time.monotonic() before which drain() waits
        self.hostname = status.hostname()
        self.machine = Machine()
        self.stats = ContainerStats()
        # One client for the agent's life: the engine's API version is asked once.
        self.engine = Engine.from_config(config)
        # Heartbeats that could not be written to the spool; they are older than anything
        # spooled after them, so they go into the spool first once it works again.
        self.unspooled: deque[bytes] = deque()
        self.lock = threading.Lock()
        self.spool_trouble = Trouble("the spool can be written again")
        self.delivery_trouble = Trouble("heartbeats are being delivered again")
        self.ping_trouble = Trouble("pings are being taken again")
        self.receipts = ReceiptStore(config.state_dir / "receipts", config.wallet)
        self.receipt_trouble = Trouble("receipts are being kept again")
        self.docker_trouble = Trouble("Docker is available again")
        self._spool: Spool | None = None
        with contextlib.suppress(OSError):  # take() says why, and retries, on every tick
            self._spool = Spool(config.spool_path, config.spool_max)

    # --- taking a heartbeat ----------------------------------------------------------------

    def collect(self) -> Heartbeat:
        root = None
        try:
            found = survey(self.engine, stats=self.stats)
            containers, root, available = found.containers, found.docker_root, True
            total = found.total
        except DockerUnavailable as exc:
            # Once per outage: which call failed, and how, varies from tick to tick.
            if self.docker_trouble.current is None:
                self.docker_trouble.report(
                    f"{exc}; heartbeats say dockerAvailable=false until Docker answers again"
                )
            containers, available, total = [], False, None
        else:
            self.docker_trouble.clear()
        return Heartbeat(
            wallet=self.config.wallet,
            timestamp=self.clock.now(),
            # Some of a large machine's containers, and how many it runs: a heartbeat listing
            # them all would be too large for the collector, and never credited.
            containers=listed(containers),
            agent=AgentInfo(
                version=agent_version(), hostname=self.hostname, dockerAvailable=available
            ),
            system=self.machine.read(root),
            tailscale_ip=tailscale_ip(),
            container_count=total,
        )

    def ping(self) -> bool:
        """Tell the collector this worker is up; True when it took the ping. A ping is not
        spooled: a lost one costs nothing, the next replaces it."""
        body = Ping(self.config.wallet, self.clock.now()).to_body()
        try:
            status_code, answer = self.sender.request(
                "POST",
                "/heartbeat/ping",
                body,
                deadline=min(PING_SECONDS, self.config.ping_interval or PING_SECONDS),
            )
        except DeliveryError as exc:
            self.ping_trouble.report(f"ping not delivered: {exc}")
            return False
        if status_code == 200 and isinstance(answer, dict) and answer.get("accepted") is True:
            self.ping_trouble.clear()
            return True
        error = answer.get("error") if isinstance(answer, dict) else None
        self.ping_trouble.report(f"ping refused ({status_code}): {error or 'no reason given'}")
        return False

    def take(self) -> bytes:
        """Collect a heartbeat and keep it for delivery: in the spool, so that a crash keeps
        it, or in memory while the spool cannot be written."""
        body = self.collect().to_body()
        with self.lock:
            self.unspooled.append(body)
            self._spool_what_waits()
        return body

    def _spool_what_waits(self) -> None:
        try:
            if self._spool is None:
                self._spool = Spool(self.config.spool_path, self.config.spool_max)
            while self.unspooled:
                self._spool.append(self.unspooled[0])
                self.unspooled.popleft()
        except OSError as exc:
            self.spool_trouble.report(
                f"cannot write the spool at {self.config.spool_path} "
                f"({exc.strerror or exc}): sending heartbeats directly, "
                "they are lost if the agent stops before they are delivered",
                logging.ERROR,
            )
            while len(self.unspooled) > self.config.spool_max:
                self.unspooled.popleft()
        else:
            self.spool_trouble.clear()

    # --- delivering --------------------------------------------------------------------------

    def _waiting(self, count: int) -> list[Entry | bytes]:
        """The oldest heartbeats waiting: spooled ones, then those held in memory."""
        with self.lock:
            waiting: list[Entry | bytes] = []
            if self._spool is not None:
                waiting = self._spool.take(count)
            waiting.extend(list(self.unspooled)[: count - len(waiting)])
            return waiting

    def pending(self) -> int:
        with self.lock:
            return (len(self._spool) if self._spool is not None else 0) + len(self.unspooled)

    def _settle(self, item: Entry | bytes) -> None:
        with self.lock:
            if isinstance(item, Entry):
                self._spool.acknowledge(item)
            elif item in self.unspooled:
                self.unspooled.remove(item)

    def drain(
        self,
        force: bool = False,
        budget: float = DRAIN_SECONDS,
        progress: Callable[[], None] = lambda: None,
        watch: bytes | None = None,
    ) -> DrainReport:
        """Deliver waiting heartbeats oldest first for at most ``budget`` seconds, until one
        fails; after a failure, wait out the backoff (``force`` is a new heartbeat's try,
        which ignores it). ``progress`` is called after every request."""
        if not force and self.retry_at is not None and time.monotonic() < self.retry_at:
            return DrainReport(0, 0, self.pending())
        credited = refused = 0
        uncredited = None  # one line a drain, however many the collector did not credit
        error = watched = None
        end = time.monotonic() + budget
        while error is None and time.monotonic() < end:
            items = self._waiting(self.sender.batch_size)
            if not items:
                break
            bodies = [item.body if isinstance(item, Entry) else item for item in items]
            try:
                outcomes = self.sender.deliver_many(bodies)
            except DeliveryError as exc:
                error = str(exc)
                break
            finally:
                progress()
            # Before the spool lets go of them: a kill -9 in between costs a heartbeat sent
            # again (answered "already stored"), never a receipt.
            self._keep_receipts(bodies, outcomes)
            for item, body, outcome in zip(items, bodies, outcomes, strict=False):
                if body == watch:
                    watched = outcome
                if outcome.verdict == "retry":
                    error = outcome.message
                    break
                if outcome.verdict == "refused":
                    log.error(
                        "the collector refused a heartbeat for good (%d: %s); dropping it",
                        outcome.status,
                        outcome.message,
                    )
                    refused += 1
                else:
                    if outcome.verdict == "uncredited":
                        uncredited = outcome
                    credited += 1
                self._settle(item)
        if uncredited is not None:
            log.warning("the collector %s", uncredited.message)
        pending = self.pending()
        if error is not None:
            delay = self.backoff.failed()
            self.retry_at = time.monotonic() + delay
            self.delivery_trouble.report(f"{error}; heartbeats stay spooled and are retried")
            log.debug("%d heartbeats waiting, next try in %.0f s", pending, delay)
        elif credited or refused:
            self.backoff.succeeded()
            self.retry_at = None
            self.delivery_trouble.clear()
        if credited or refused or error:
            status.record(
                self.config,
                credited=credited,
                error=error,
                pending=pending,
                offset=self.clock.offset,
            )
        return DrainReport(credited, refused, pending, error, watched)

    def _keep_receipts(self, bodies: list[bytes], outcomes: list[Outcome]) -> None:
        """Keep the receipts the collector answered with: every one of the answer's, those
        after a heartbeat left to retry included, as the collector credited them already."""
        delivered = [
            (body, outcome.receipt)
            for body, outcome in zip(bodies, outcomes, strict=False)
            if outcome.receipt is not None
        ]
        if not delivered:
            return
        try:
            self.receipts.keep(delivered)
        except Exception as exc:  # whatever went wrong, no receipt is worth a heartbeat
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            self.receipt_trouble.report(
                f"cannot keep the collector's receipts in {self.receipts.path} ({why}): "
                "heartbeats are still delivered and credited, their receipts are lost",
                logging.ERROR,
            )
        else:
            self.receipt_trouble.clear()

    def sync_clock(self) -> None:
        """Learn the collector's clock before stamping a heartbeat (an answer does as well)."""
        try:
            self.sender.request("GET", "/healthz", deadline=SYNC_SECONDS)
        except DeliveryError as exc:
            log.debug("cannot read the collector's clock yet: %s", exc)

    def tick(self) -> TickReport:
        """``once``: take a heartbeat and deliver everything waiting, this one last."""
        body = self.take()
        return TickReport(body, self.drain(force=True, watch=body))

    def close(self) -> None:
        self.stats.close()
        self.sender.close()
        self.engine.close()


class Liveness:
    """What the watchdog trusts. Each part says when it begins and ends a step; a step past
    its time limit (a hang), or a periodic step that has not begun for longer than its
    period (a scheduler that skips it), stops the pings, so systemd restarts the agent."""

    def __init__(self, limits: dict[str, float], periods: dict[str, float] | None = None):
        self.limits = limits
        self.periods = periods or {}
        self.started: dict[str, float] = {}
        now = time.monotonic()
        self.last_begun = {name: now for name in self.periods}
        self.lock = threading.Lock()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.begin(name)
        try:
            yield
        finally:
            self.end(name)

    def begin(self, name: str) -> None:
        with self.lock:
            self.started[name] = self.last_begun[name] = time.monotonic()

    def end(self, name: str) -> None:
        with self.lock:
            self.started.pop(name, None)

    def since_begun(self, name: str) -> float:
        with self.lock:
            return time.monotonic() - self.last_begun[name]

    def stuck(self) -> list[str]:
        now = time.monotonic()
        with self.lock:
            hung = [
                f"{name} has not progressed for {now - since:.0f} s"
                for name, since in self.started.items()
                if now - since > self.limits.get(name, math.inf)
            ]
            skipped = [
                f"no {name} begun for {now - self.last_begun[name]:.0f} s"
                for name, period in self.periods.items()
                if now - self.last_begun[name] > period
            ]
        return hung + skipped


def run(config: AgentConfig, key: AgentKey, notifier: Notifier) -> int:
    """The daemon: heartbeats on the interval (with jitter so a fleet does not beat in
    lockstep), delivery after each and every few seconds, pings, each an APScheduler job on a
    thread of its own; watchdog pings while both halves progress, a clean stop on SIGTERM."""
    # Only the daemon schedules: once, status and the rest never load APScheduler.
    from agent.schedule import Schedule

    agent = Agent(config, key)
    stop, wake = threading.Event(), threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    # A drain with no new heartbeat to deliver: it retries what waits once the backoff is over.
    drain_every = min(5.0, config.interval)
    limits = {
        # Listing containers is a handful of Docker calls, each bounded by the timeout.
        "taking a heartbeat": 4 * config.docker_timeout + 10,
        "delivering": config.send_timeout + config.connect_timeout + 10,
    }
    liveness = Liveness(
        limits,
        {
            # The interval with its largest jitter, and the time one take may take.
            "taking a heartbeat": config.interval * (1 + config.jitter)
            + limits["taking a heartbeat"],
            # A drain begins that often, and one in progress begins again at each request.
            "delivering": drain_every + limits["delivering"],
        },
    )
    agent.sync_clock()
    schedule = Schedule()

    def take() -> None:
        with liveness.step("taking a heartbeat"):
            agent.take()
        wake.set()
        schedule.run_now("delivery")

    def deliver() -> None:
        while not stop.is_set():
            force = wake.is_set()  # a new heartbeat's try ignores the backoff
            wake.clear()
            liveness.begin("delivering")
            report = agent.drain(force=force, progress=lambda: liveness.begin("delivering"))
            liveness.end("delivering")
            # A drain that stopped at its time bound with work left goes straight on, as does
            # one a heartbeat arrived during (its run_now() found this run still going).
            cut_short = report.pending and report.error is None and report.credited + report.refused
            if not (cut_short or wake.is_set()):
                return

    schedule.every("heartbeat", config.interval, take, config.interval * config.jitter)
    schedule.every("delivery", drain_every, deliver)
    if config.ping_interval:
        # A job of their own: a slow Docker engine never delays them, nor they a heartbeat.
        schedule.every("ping", config.ping_interval, agent.ping)
    schedule.start()
    notifier.ready(f"sending heartbeats for {config.wallet} every {config.interval} s")
    log.info(
        "agent %s started: wallet %s, collector %s, interval %d s",
        agent_version(),
        config.wallet,
        config.collector_url,
        config.interval,
    )
    ping = min(5.0, notifier.watchdog_interval or 5.0)
    hung = Trouble("every part of the agent is progressing again")
    while not stop.wait(ping):
        stuck = liveness.stuck()
        if stuck:
            hung.report(f"{'; '.join(stuck)}: not pinging the watchdog", logging.ERROR)
        else:
            hung.clear()
            notifier.watchdog()
        if jump := agent.clock.wall_jump():
            # APScheduler reads the wall clock: a step back would hold every job that long.
            due = schedule.follow_wall_clock()["heartbeat"]
            log.warning(
                "this machine's clock was set %s by %.0f s; heartbeats keep the collector's "
                "time, and the next one is due in %.0f s as before",
                "forward" if jump > 0 else "back",
                abs(jump),
                due,
            )
    notifier.stopping()
    log.info("stopping")
    # Within systemd's TimeoutStopSec; a request cut short leaves its heartbeats spooled.
    if not schedule.stop(STOP_SECONDS):
        log.warning("a job is still running after %.0f s; stopping without it", STOP_SECONDS)
        logging.shutdown()
        # Its thread is a concurrent.futures worker, which the interpreter joins at exit:
        # exiting normally would wait for the job after all.
        os._exit(0)
    agent.close()
    return 0
