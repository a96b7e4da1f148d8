"""tassium-agent: the Tassium worker agent, which proves this machine's uptime to the
collector with signed heartbeats."""

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from agent import keys
from agent.config import DEFAULT_CONFIG_PATH, AgentConfig, check_state_dir, load_config
from agent.errors import AgentError, DeliveryError
from agent.systemd import Notifier
from protocol.heartbeat import encode_public_key

log = logging.getLogger("agent")

# The top-level modules of the agent extra's libraries (pyproject.toml) and of theirs.
AGENT_LIBRARIES = frozenset(
    {"docker", "requests", "urllib3", "apscheduler", "tzlocal", "httpx", "httpcore", "h2", "h11",
     "certifi", "idna", "anyio", "yaml", "Crypto"}
)  # fmt: skip
_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


class JournalFormatter(logging.Formatter):
    """Under systemd, a ``<priority>`` prefix lets journald keep each line's level."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{_PRIORITY.get(record.levelname, 6)}>{record.name}: {record.getMessage()}"


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if "JOURNAL_STREAM" in os.environ:
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


class _Version(argparse.Action):
    """--version: the installed distribution's version, looked up only when asked (the
    metadata machinery is not worth loading on every start)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("tassium")
        except PackageNotFoundError:  # run from a checkout that was never installed
            found = "unknown (not installed)"
        print(f"{parser.prog} {found}")
        parser.exit()


def cmd_keygen(config: AgentConfig, _args) -> int:
    check_state_dir(config, create=True)
    key = keys.generate(config.key_path)
    print(f"key written to {config.key_path} (mode 0600)")
    print(f"public key: {encode_public_key(key)}")
    print(f"fingerprint: {keys.fingerprint(key)}")
    return 0


def cmd_enroll(config: AgentConfig, args) -> int:
    from agent import enrollment
    from agent.clock import CollectorClock
    from agent.sender import Sender

    check_state_dir(config, write=False)  # enrolling reads the key and writes nothing
    key = keys.load(config.key_path)
    sender = Sender(config, key, CollectorClock())
    try:
        if args.token:
            outcome = enrollment.enroll_directly(sender, config, key, args.token)
        elif args.signature:
            outcome = enrollment.send_signature(sender, args.challenge, args.signature)
        else:
            outcome = _enroll_by_wallet(config, key, sender, args.wait)
    except enrollment.EnrollmentRefused as exc:
        print(f"enrollment refused: {exc}", file=sys.stderr)
        return 1
    finally:
        sender.close()
    fingerprint = keys.fingerprint(key)
    print(
        {
            "replaced": f"enrolled {config.wallet} with the new key {fingerprint}, "
            "replacing the key enrolled before",
            "unchanged": f"{config.wallet} is already enrolled with key {fingerprint}",
        }.get(outcome, f"enrolled {config.wallet} with key {fingerprint}")
    )
    return 0


def _enroll_by_wallet(config: AgentConfig, key, sender, wait: float | None) -> str:
    """Ask for a challenge, show it, and wait for the owner's signature."""
    from agent import enrollment

    if enrollment.holds_key(sender, config, key):
        return "unchanged"  # installing again: nothing to sign
    replacing = enrollment.wallet_has_key(sender, config.wallet)
    try:
        challenge = enrollment.ask(sender, config, key)
    except enrollment.NoChallenges:
        return enrollment.enroll_directly(sender, config, key, None)
    terminal = sys.stdin if sys.stdin is not None and sys.stdin.isatty() else None
    lines = [
        f"To let this machine earn uptime for {config.wallet}, that wallet must sign:",
        "",
        *("    " + line for line in challenge.message.splitlines()),
        "",
        "Sign it with your browser wallet (one click) at:",
        f"    {challenge.sign_url}",
        "or sign it elsewhere and "
        + (
            "paste the signature here, then press Enter."
            if terminal
            # "=" keeps argparse from taking an id that starts with "-" for an option.
            else f"run: tassium-agent enroll --challenge={challenge.id} --signature SIGNATURE"
        ),
        f"Waiting for the signature until {challenge.expires_at} ...",
    ]
    print("\n".join(lines), flush=True)
    left = enrollment.seconds_left(challenge)
    until = time.monotonic() + (left if wait is None else min(wait, left))
    outcome = enrollment.wait_for_signature(
        sender,
        config,
        key,
        challenge,
        typed=terminal,
        until=until,
        say=lambda text: print(text, file=sys.stderr, flush=True),
    )
    return "replaced" if outcome == "enrolled" and replacing else outcome


def cmd_once(config: AgentConfig, _args) -> int:
    from agent.service import Agent

    check_state_dir(config)
    agent = Agent(config, keys.load(config.key_path))
    try:
        agent.sync_clock()
        report = agent.tick()
    finally:
        agent.close()
    print(report.heartbeat.decode())
    drain, outcome = report.drain, report.drain.watched
    print(
        f"credited {drain.credited}, refused {drain.refused}, still waiting {drain.pending}"
        + (f"; error: {drain.error}" if drain.error else ""),
        file=sys.stderr,
    )
    if outcome is None or outcome.verdict != "credited":
        why = outcome.message if outcome is not None else drain.error or "not delivered"
        print(f"this heartbeat was not credited: {why}", file=sys.stderr)
        return 1
    if outcome.downtime:
        # Taken, but earning nothing: an owner must not read "credited" as being paid.
        print(f"this heartbeat was counted as downtime: {outcome.message}", file=sys.stderr)
        return 1
    return 0


def cmd_status(config: AgentConfig, _args) -> int:
    from agent import status

    healthy = True
    for line in status.check(config):
        healthy = healthy and line.ok is not False
        mark = "   " if line.ok is None else "ok " if line.ok else "BAD"
        print(f"{mark} {line.name:<11} {line.text}")
    return 0 if healthy else 1


def cmd_receipts(config: AgentConfig, args) -> int:
    from agent import receipt_report

    return receipt_report.run(config, args.period, args.output)


def _period(text: str):
    """--period as the collector reads one (protocol/periods.py); argparse says what is
    wrong with it, as with any other argument."""
    from protocol.periods import Period
    from protocol.times import utcnow

    try:
        return Period.parse(text, utcnow())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_run(config: AgentConfig, _args) -> int:
    from agent.service import run

    check_state_dir(config)
    return run(config, keys.load(config.key_path), Notifier.from_environ(os.environ))


# In the order an owner uses them; each help is one line of plain text (--help shows it).
COMMANDS = {
    "keygen": (cmd_keygen, "generate the worker's signing key"),
    "enroll": (
        cmd_enroll,
        "register this worker's public key with the collector, signed for by the wallet",
    ),
    "run": (cmd_run, "run the daemon (what systemd starts)"),
    "once": (cmd_once, "send one heartbeat now; fails unless it is credited"),
    "status": (cmd_status, "check state, key, Docker, collector, clock, enrollment, spool"),
    "receipts": (
        cmd_receipts,
        "print the uptime the collector's receipts prove and write them to a file to send",
    ),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="tassium-agent",
        description=__doc__,
        epilog=f"Settings are read from {DEFAULT_CONFIG_PATH} (or --config, or the file "
        "TASSIUM_CONFIG names); each can be overridden by an environment variable named "
        "TASSIUM_ and the setting in capitals, such as TASSIUM_COLLECTOR_URL.",
    )
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help=f"instead of {DEFAULT_CONFIG_PATH}"
    )
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )
    for name, (_, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name == "enroll":
            sub.add_argument(
                "--token",
                help="single-use enrollment token from the operator, instead of the wallet's "
                "signature (fleets)",
            )
            sub.add_argument(
                "--challenge",
                metavar="ID",
                help="a challenge printed by an earlier enroll, to send --signature for",
            )
            sub.add_argument(
                "--signature",
                help="the wallet's signature over that challenge (0x... or base64)",
            )
            sub.add_argument(
                "--wait",
                type=float,
                metavar="SECONDS",
                help="how long to wait for the signature (default: until the challenge "
                "expires, 15 minutes)",
            )
        if name == "receipts":
            sub.add_argument(
                "--period",
                type=_period,
                help="a UTC month like 2026-11 (default: this month), 24h, 7d, 30d, or an "
                "interval like 2026-11-01T00:00:00Z/2026-11-15T00:00:00Z",
            )
            sub.add_argument(
                "--output",
                type=Path,
                metavar="FILE",
                help="where to write the receipts (default: tassium-receipts-PERIOD.json in "
                "the current directory)",
            )
    args = parser.parse_args(argv)
    if args.command == "enroll" and bool(args.challenge) != bool(args.signature):
        parser.error("enroll: --challenge and --signature go together")
    try:
        config = load_config(args.config)
        _setup_logging(config.log_level)
        for warning in config.warnings:
            log.warning("%s", warning)
        sys.exit(COMMANDS[args.command][0](config, args))
    except DeliveryError as exc:
        sys.exit(f"tassium-agent: cannot reach the collector: {exc}")
    except AgentError as exc:
        sys.exit(f"tassium-agent: {exc}")
    except OSError as exc:
        # What no check above foresaw still names the path and the reason in one line.
        paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
        sys.exit(f"tassium-agent: {paths + ': ' if paths else ''}{exc.strerror or exc}")
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C on once or status: the owner knows, no traceback needed
    except ModuleNotFoundError as exc:
        # An install without the agent's libraries (a bare `pip install tassium`) is the
        # owner's to fix; a module of the agent itself missing is a bug, with its traceback.
        package = (exc.name or "").partition(".")[0]
        if package not in AGENT_LIBRARIES:
            raise
        sys.exit(
            f"tassium-agent: the Python package {package!r} is missing: the agent needs its "
            "libraries, pip install 'tassium[agent]' (the install script does)"
        )
