"""The agent's work: one ``tick()`` collects, signs and spools a heartbeat, then ``drain()``
delivers the spool oldest first; ``run()`` repeats them on an APScheduler interval."""

import json
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import AgentConfig
from agent.containers import list_containers
from agent.errors import DeliveryError, DockerUnavailable, Rejected
from agent.sender import Backoff, Sender
from agent.spool import Spool
from agent.systemd import Notifier
from protocol.heartbeat import AgentInfo, Heartbeat
from protocol.times import format_timestamp, utcnow

log = logging.getLogger(__name__)


def agent_version() -> str:
    try:
        return version("tassium")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class DrainReport:
    delivered: int
    dropped: int
    pending: int
    error: str | None = None


@dataclass(frozen=True)
class TickReport:
    heartbeat: Heartbeat
    drain: DrainReport


class Agent:
    def __init__(self, config: AgentConfig, key: Ed25519PrivateKey, sender: Sender | None = None):
        self.config = config
        self.spool = Spool(config.spool_path, config.spool_max)
        self.sender = sender or Sender(config, key)
        self.backoff = Backoff(config.retry_base, config.retry_max)
        self.retry_at: float | None = None  # time.monotonic() before which drain() waits
        self.hostname = socket.gethostname()
        self.lock = threading.Lock()

    def collect(self) -> Heartbeat:
        try:
            containers = list_containers(self.config.docker_host, self.config.docker_timeout)
            available = True
        except DockerUnavailable as exc:
            log.warning("%s; reporting dockerAvailable=false", exc)
            containers, available = [], False
        return Heartbeat(
            wallet=self.config.wallet,
            timestamp=utcnow(),
            containers=tuple(containers),
            agent=AgentInfo(
                version=agent_version(), hostname=self.hostname, dockerAvailable=available
            ),
        )

    def tick(self) -> TickReport:
        """One iteration: a new heartbeat goes to the spool first (so a crash keeps it), then
        the spool is delivered."""
        heartbeat = self.collect()
        with self.lock:
            self.spool.append(heartbeat.to_body())
        return TickReport(heartbeat, self.drain(force=True))

    def drain(self, force: bool = False) -> DrainReport:
        """Deliver spooled heartbeats oldest first until one fails; after a failure, wait
        out the backoff (``force`` is a new heartbeat's try, which ignores it)."""
        delivered = dropped = 0
        error = None
        with self.lock:
            if not force and self.retry_at is not None and time.monotonic() < self.retry_at:
                return DrainReport(0, 0, len(self.spool))
            while (entry := self.spool.oldest()) is not None:
                try:
                    self.sender.deliver(entry.body)
                except Rejected as exc:
                    log.error("%s; dropping it", exc)
                    dropped += 1
                except DeliveryError as exc:
                    delay = self.backoff.failed()
                    self.retry_at = time.monotonic() + delay
                    error = str(exc)
                    log.warning(
                        "%s; %d heartbeats spooled, next try in %.0f s", exc, len(self.spool), delay
                    )
                    break
                else:
                    delivered += 1
                    self.backoff.succeeded()
                    self.retry_at = None
                self.spool.acknowledge(entry)
            pending = len(self.spool)
        if delivered or dropped or error:
            self._record_status(delivered, error, pending)
        return DrainReport(delivered, dropped, pending, error)

    def _record_status(self, delivered: int, error: str | None, pending: int) -> None:
        status = read_status(self.config)
        now = format_timestamp(utcnow())
        status["lastAttempt"] = now
        if delivered:
            status["lastDelivery"] = now
        status["lastError"] = error
        status["pending"] = pending
        temporary = self.config.status_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(status))
        os.replace(temporary, self.config.status_path)

    def close(self) -> None:
        self.sender.close()


def read_status(config: AgentConfig) -> dict:
    try:
        return json.loads(config.status_path.read_text())
    except (OSError, ValueError):
        return {}


def run(config: AgentConfig, key: Ed25519PrivateKey, notifier: Notifier) -> int:
    """The daemon: heartbeats on the interval (with jitter so a fleet does not beat in
    lockstep), spool retries and watchdog pings in between, a clean stop on SIGTERM."""
    agent = Agent(config, key)
    # One executor thread runs every job, so a job that hangs stops the watchdog pings too,
    # and systemd restarts the agent.
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    scheduler.add_job(
        agent.tick,
        IntervalTrigger(seconds=config.interval, jitter=config.interval * config.jitter or None),
        next_run_time=utcnow(),
        id="heartbeat",
    )
    poll = min(5.0, config.interval, notifier.watchdog_interval or 5.0)

    def maintain() -> None:
        notifier.watchdog()
        agent.drain()

    scheduler.add_job(maintain, IntervalTrigger(seconds=poll), id="maintain")

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    scheduler.start()
    notifier.ready(f"sending heartbeats for {config.wallet} every {config.interval} s")
    log.info(
        "agent %s started: wallet %s, collector %s, interval %d s",
        agent_version(),
        config.wallet,
        config.collector_url,
        config.interval,
    )
    stop.wait()
    notifier.stopping()
    log.info("stopping")
    scheduler.shutdown(wait=True)
    agent.close()
    return 0
