"""What the agent knows about itself: ``status.json`` (written by the daemon and ``once``
after each delivery attempt) and the checks ``tassium-agent status`` prints, which read and
ask but never change anything on disk."""

import json
import logging
import os
import socket
from dataclasses import dataclass

from agent import keys
from agent.clock import CollectorClock
from agent.config import AgentConfig, check_state_dir
from agent.containers import survey
from agent.engine import Engine
from agent.enrollment import holds_key
from agent.errors import AgentError, ConfigError, DeliveryError, DockerUnavailable
from agent.sender import UNPAID, Sender
from agent.spool import QUARANTINE, entry_names
from protocol.heartbeat import encode_public_key
from protocol.times import format_timestamp, utcnow

log = logging.getLogger(__name__)

# The collector's default, for a collector too old to say its own.
DEFAULT_MAX_SKEW = 120


def hostname() -> str:
    return socket.gethostname()


def read(config: AgentConfig) -> dict:
    try:
        document = json.loads(config.status_path.read_text())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def saved_offset(config: AgentConfig) -> float | None:
    """The clock offset learned last time, for a start while the collector is unreachable."""
    offset = read(config).get("clockOffset")
    return (
        float(offset) if isinstance(offset, int | float) and not isinstance(offset, bool) else None
    )


def record(
    config: AgentConfig, *, credited: int, error: str | None, pending: int, offset: float | None
) -> None:
    """Note a delivery attempt. Best effort: a full disk must not stop delivery."""
    document = read(config)
    now = format_timestamp(utcnow())
    document.update(lastAttempt=now, lastError=error, pending=pending)
    if credited:
        document["lastDelivery"] = now
    if offset is not None:
        document["clockOffset"] = round(offset, 3)
    # A name of its own: the daemon and a ``once`` beside it may write at the same moment.
    temporary = config.status_path.with_name(f".status-{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(document))
        os.replace(temporary, config.status_path)
    except OSError as exc:
        log.debug("cannot write %s: %s", config.status_path, exc)
        temporary.unlink(missing_ok=True)


@dataclass(frozen=True)
class Line:
    name: str
    ok: bool | None  # None: information, neither good nor bad
    text: str


def check(config: AgentConfig) -> list[Line]:
    """Every check ``status`` prints, in order."""
    lines = [Line("wallet", None, config.wallet), Line("collector", None, config.collector_url)]
    try:
        check_state_dir(config)
        lines.append(Line("state", True, str(config.state_dir)))
    except ConfigError as exc:
        lines.append(Line("state", False, str(exc)))
    try:
        key = keys.load(config.key_path)
        lines.append(Line("key", True, f"{keys.fingerprint(key)} ({config.key_path})"))
    except AgentError as exc:
        key = None
        lines.append(Line("key", False, str(exc)))
    engine = Engine.from_config(config)
    try:
        count = survey(engine).total
        lines.append(Line("docker", True, f"{count} containers at {engine.address}"))
    except DockerUnavailable as exc:
        # The owner's first question: without Docker, nothing this machine sends is paid.
        lines.append(Line("docker", False, f"{exc}: {UNPAID}"))
    finally:
        engine.close()

    clock = CollectorClock()
    sender = Sender(config, key, clock)
    try:
        lines += _collector_lines(config, sender, key)
    finally:
        sender.close()

    lines += _spool_lines(config)
    document = read(config)
    error = document.get("lastError")
    lines.append(
        Line(
            "delivered",
            error is None,
            f"last at {document.get('lastDelivery', 'never')}"
            + (f"; the last attempt failed: {error}" if error else ""),
        )
    )
    return lines


def _collector_lines(config: AgentConfig, sender: Sender, key: keys.AgentKey | None) -> list[Line]:
    try:
        code, health = sender.request("GET", "/healthz")
    except DeliveryError as exc:
        return [Line("reachable", False, f"cannot reach the collector: {exc}")]
    if not isinstance(health, dict) or "status" not in health:
        return [Line("reachable", False, f"/healthz answered {code}, not as a collector does")]
    lines = [Line("reachable", code == 200, f"/healthz answered {code}")]

    offset = sender.clock.offset
    if offset is not None:
        limit = health.get("maxSkew", DEFAULT_MAX_SKEW)
        behind = "behind" if offset > 0 else "ahead of"
        text = f"this machine's clock is {abs(offset):.1f} s {behind} the collector's"
        if abs(offset) > limit:
            text += (
                f", beyond its {limit} s limit: heartbeats are stamped on the collector's time, "
                "but set the clock right (timedatectl set-ntp true)"
            )
        lines.append(Line("clock", abs(offset) <= limit, text))

    if key is not None:
        lines.append(_enrollment_line(config, sender, key))
    return lines


def _enrollment_line(config: AgentConfig, sender: Sender, key: keys.AgentKey) -> Line:
    try:
        code, worker = sender.request("GET", f"/workers/{config.wallet}")
    except DeliveryError as exc:
        return Line("enrolled", False, f"cannot ask the collector: {exc}")
    enroll = "run tassium-agent enroll"
    if code == 404:
        return Line("enrolled", False, f"the collector does not know {config.wallet}: {enroll}")
    if code != 200 or not isinstance(worker, dict):
        return Line("enrolled", False, f"the collector answered {code} about this wallet")
    if not worker.get("enrolled"):
        return Line("enrolled", False, f"this wallet has no key at the collector: {enroll}")
    ours = encode_public_key(key)
    theirs = worker.get("publicKey", ours)  # a collector from before publicKey was shown
    # Hidden from all but the owner and the operator: the enrollment route says whether it
    # holds this very key, and changes nothing.
    held = holds_key(sender, config, key) if theirs is None else theirs == ours
    if not held:
        return Line(
            "enrolled",
            False,
            "the collector holds another key for this wallet, so it refuses these heartbeats: "
            "tassium-agent enroll replaces it once the wallet signs",
        )
    seen = worker.get("lastHeartbeat") or "none yet"
    return Line("enrolled", True, f"with this key; last heartbeat the collector has: {seen}")


def _spool_lines(config: AgentConfig) -> list[Line]:
    try:
        pending = len(entry_names(config.spool_path))
    except OSError as exc:
        return [Line("spool", False, f"cannot read {config.spool_path}: {exc.strerror}")]
    lines = [Line("spool", pending < config.spool_max, f"{pending} heartbeats waiting")]
    try:
        aside = len(os.listdir(config.spool_path / QUARANTINE))
    except OSError:
        aside = 0
    if aside:
        lines.append(
            Line(
                "quarantine",
                None,
                f"{aside} unreadable entries in {config.spool_path / QUARANTINE}",
            )
        )
    return lines
