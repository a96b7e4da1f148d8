"""``tassium-agent receipts``: the uptime the kept receipts prove over a period, said in
plain words, and the file of them (protocol/receipt_files.py) an owner sends with a
question about a payout."""

import base64
import binascii
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent import receipts
from agent.config import AgentConfig
from protocol.periods import ROLLING, Period
from protocol.receipt_files import ReceiptFile, Span, covered, proven_spans
from protocol.receipts import SignedReceipt
from protocol.times import format_timestamp, utcnow

# The collector's published keys are worth a short wait, not a command that hangs.
CHECK_SECONDS = 10.0
WELL_KNOWN_PATH = "/.well-known/tassium-collector.json"
DAY = timedelta(days=1)
_MONTH = re.compile(r"\d{4}-\d{2}")


def run(config: AgentConfig, period: Period | None, output: Path | None) -> int:
    """Print what the receipts kept for ``period`` (default: this UTC month) prove, check
    their signatures when the collector can be asked, and write them to ``output``. 1 when
    no receipt is kept for the period (and nothing is written)."""
    now = utcnow()
    period = period or Period.parse(receipts.month_of(now), now)
    kept_in = config.state_dir / "receipts"
    kept = receipts.read(kept_in, config.wallet, period.start, period.end)
    for problem in kept.problems:
        print(f"left out, as it cannot be read: {problem}", file=sys.stderr)
    if kept.other_wallets:
        print(
            f"left out: {kept.other_wallets} receipts kept for another wallet this worker "
            "earned for before",
            file=sys.stderr,
        )
    if not kept.receipts:
        print(
            f"No receipts for {config.wallet} {described(period)} are kept in {kept_in}. "
            "The agent keeps the collector's receipt for each window of uptime it credits, "
            "from the first heartbeat a collector answers with one.",
            file=sys.stderr,
        )
        return 1
    print("\n".join(summary(config.wallet, kept.receipts, period, now)))
    print(check_signatures(config, kept.receipts))
    path = output or default_output(period)
    # A rolling label (24h) would mean another span to whoever reads the file later.
    label = period.label
    if label in ROLLING:
        label = f"{format_timestamp(period.start)}/{format_timestamp(period.end)}"
    sent = ReceiptFile(config.wallet, tuple(kept.receipts), config.collector_url, label)
    try:
        receipts.write_whole(path, sent.to_bytes(), mode=0o644)
    except OSError as exc:
        print(
            f"cannot write {path}: {exc.strerror}; name another file with --output", file=sys.stderr
        )
        return 1
    print(
        f"Wrote them to {path.resolve()}. Send that file to the operator of "
        f"{config.collector_url} with your question about the payout, or check it yourself "
        f"with: tassium-collector verify-receipts {path}"
    )
    return 0


def default_output(period: Period) -> Path:
    """``tassium-receipts-<period>.json`` here; an interval's ':' and '/' are left out of it,
    which no file name may hold (nor Windows, where an owner may open it)."""
    safe = re.sub(r"[^A-Za-z0-9.-]+", "_", period.label.replace(":", ""))
    return Path(f"tassium-receipts-{safe}.json")


def summary(wallet: str, kept: list[SignedReceipt], period: Period, now: datetime) -> list[str]:
    """What the receipts prove over the period (up to now, for one not over yet), then day by
    UTC day: the unit an owner finds a missing hour in."""
    until = period.end if now >= period.end or now <= period.start else now
    spans = [
        (max(a, period.start), min(b, until))
        for a, b in proven_spans(kept)
        if a < until and b > period.start
    ]
    up = covered(spans, period.start, until)
    share = up / (until - period.start) * 100
    so_far = " so far" if until < period.end else ""
    count = "1 window proves" if len(kept) == 1 else f"{len(kept)} windows prove"
    head = (
        f"Receipts for {wallet} {described(period)}: {count} {duration(up)} up "
        f"({share:.1f} % of the period{so_far})"
    )
    if spans:
        head += f", from {clock(spans[0][0])} to {clock(spans[-1][1])}"
    return [head + ".", "Up each UTC day:", *_days(spans, period.start, until)]


def _days(spans: list[Span], start: datetime, until: datetime) -> list[str]:
    lines = []
    day = datetime(start.year, start.month, start.day, tzinfo=UTC)
    while day < until:
        first, last = max(day, start), min(day + DAY, until)
        up = covered(spans, first, last)
        lines.append(f"  {day:%Y-%m-%d}  {duration(up):>13}  {up / (last - first) * 100:5.1f} %")
        day += DAY
    return lines


def described(period: Period) -> str:
    if period.label in ROLLING:
        return f"in the last {period.label}"
    if _MONTH.fullmatch(period.label):
        return f"in {period.label}"
    return f"from {clock(period.start)} to {clock(period.end)}"


def clock(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def duration(span: timedelta) -> str:
    hours, rest = divmod(int(span.total_seconds()), 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def check_signatures(config: AgentConfig, kept: list[SignedReceipt]) -> str:
    """One sentence: whether the receipts' signatures check against the keys the collector
    publishes, or why they could not be checked now (which changes nothing: whoever is sent
    the file checks them)."""
    from agent.clock import CollectorClock
    from agent.errors import DeliveryError
    from agent.sender import Sender

    where = config.collector_url + WELL_KNOWN_PATH
    sender = Sender(config, None, CollectorClock())
    try:
        status, answer = sender.request("GET", WELL_KNOWN_PATH, deadline=CHECK_SECONDS)
    except DeliveryError as exc:
        return f"The signatures could not be checked now ({exc}); whoever you send them to can."
    finally:
        sender.close()
    keys = _published_keys(answer) if status == 200 else {}
    if not keys:
        return (
            f"The signatures could not be checked now: {where} answered {status} without the "
            "collector's keys; whoever you send them to can check them."
        )
    bad = sum(not _verifies(keys.get(s.receipt.key_id), s) for s in kept)
    if not bad:
        return f"All {len(kept)} signatures check against the collector's keys ({where})."
    return (
        f"{bad} of the {len(kept)} receipts do not check against the collector's keys "
        f"({where}): it will not count those. Ask its operator why."
    )


def _published_keys(answer: object) -> dict[str, object]:
    """The Ed25519 public keys of the collector's well-known document, by key id."""
    from Crypto.Signature import eddsa

    found: dict[str, object] = {}
    listed = answer.get("keys") if isinstance(answer, dict) else None
    for entry in listed if isinstance(listed, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("keyId"), str):
            continue
        try:
            raw = base64.b64decode(entry.get("publicKey"), validate=True)
            found[entry["keyId"]] = eddsa.import_public_key(encoded=raw)
        except (binascii.Error, TypeError, ValueError):
            continue  # a key no receipt can be checked with: theirs then do not check
    return found


def _verifies(key: object | None, signed: SignedReceipt) -> bool:
    from Crypto.Signature import eddsa

    if key is None:
        return False
    try:
        eddsa.new(key, "rfc8032").verify(signed.message(), signed.signature)
    except ValueError:
        return False
    return True
