"""Receipt files, and the uptime a set of receipts proves (issue 24).

An agent keeps the receipts of its credited heartbeats; an owner sends a file of them to
whoever checks a payout (``tassium-collector verify-receipts FILE``, or the collector's
public route). The file is JSON, written one way by ``ReceiptFile.to_bytes``::

    {"type": "tassium-receipts", "v": 1,
     "walletAddress": "0x…", "collector": "https://…" or null, "period": "2026-11" or null,
     "receipts": [{"body": {...}, "signature": "<base64>"}, …]}

Every receipt in it should be for the file's wallet: a checker refuses one for another
(``foreign``), naming it, and checks the rest.

What receipts prove: each receipt says the collector had credited its window from
``windowStart`` to ``windowEnd`` when it signed. A window only grows, so the last receipt of
a window (``latest_per_window``) stands for every earlier one, and the uptime a set proves is
the union of those spans (``proven_spans``). Credits are per heartbeat: a receipt proves its
own ``creditsMillis``, not its window's. ``hourly`` cuts a proof (or the collector's records,
which the collector compares with it) into UTC hours, the unit a dispute is argued in.

Nothing here checks a signature (the protocol imports no crypto library): the collector
checks them against its published keys.
"""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from protocol import ProtocolError
from protocol.receipts import SignedReceipt

FILE_TYPE = "tassium-receipts"
FILE_VERSION = 1
# A year of windows of a worker that restarts every few minutes is far fewer; a file past
# this is not a receipt file, and reading it would only cost the reader memory.
MAX_RECEIPTS = 200_000
HOUR = timedelta(hours=1)

Span = tuple[datetime, datetime]


@dataclass(frozen=True)
class ReceiptFile:
    """One wallet's receipts, as an owner sends them."""

    wallet: str
    receipts: tuple[SignedReceipt, ...]
    collector: str | None = None  # the collector's URL the agent got them from
    period: str | None = None  # the period the file was written for, as asked

    def to_bytes(self) -> bytes:
        """The file: one receipt per line, so that a person can read and diff it."""
        head = {
            "type": FILE_TYPE,
            "v": FILE_VERSION,
            "walletAddress": self.wallet,
            "collector": self.collector,
            "period": self.period,
        }
        lines = [_compact(r.to_json()) for r in self.receipts]
        receipts = "[]" if not lines else "[\n  " + ",\n  ".join(lines) + "\n]"
        return (_compact(head)[:-1] + ',\n"receipts": ' + receipts + "}\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> "ReceiptFile":
        """Read a file, or raise ProtocolError saying what is wrong with it (naming the
        receipt, counted from 1)."""
        try:
            value = json.loads(data)
        except (UnicodeDecodeError, ValueError):
            raise ProtocolError("a receipt file must be JSON (UTF-8)") from None
        except RecursionError:  # how json gives up on deep nesting
            raise ProtocolError("the file nests JSON deeper than any receipt file does") from None
        if not isinstance(value, dict) or value.get("type") != FILE_TYPE:
            raise ProtocolError(f'a receipt file is a JSON object with "type": "{FILE_TYPE}"')
        if value.get("v") != FILE_VERSION:
            raise ProtocolError(
                f"receipt file version {value.get('v')!r} is not one this program reads "
                f"(it reads version {FILE_VERSION})"
            )
        wallet, receipts = value.get("walletAddress"), value.get("receipts")
        if not isinstance(wallet, str):
            raise ProtocolError("a receipt file names its walletAddress")
        if not isinstance(receipts, list):
            raise ProtocolError("a receipt file's receipts must be a list")
        if len(receipts) > MAX_RECEIPTS:
            raise ProtocolError(f"a receipt file holds at most {MAX_RECEIPTS} receipts")
        for name in ("collector", "period"):
            if value.get(name) is not None and not isinstance(value[name], str):
                raise ProtocolError(f"a receipt file's {name} must be a string or null")
        read = []
        for number, item in enumerate(receipts, 1):
            try:
                read.append(SignedReceipt.from_json(item))
            except ProtocolError as exc:
                raise ProtocolError(f"receipt {number}: {exc}") from None
        return cls(wallet, tuple(read), value.get("collector"), value.get("period"))


def foreign(file: ReceiptFile) -> list[int]:
    """The numbers (from 1) of the file's receipts that are for another wallet."""
    return [n for n, r in enumerate(file.receipts, 1) if r.receipt.wallet != file.wallet]


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def latest_per_window(receipts: Iterable[SignedReceipt]) -> list[SignedReceipt]:
    """The receipts that stand for all the others: per wallet and window start, the one
    whose window ends last (then the one signed last), ordered by window start."""
    best: dict[tuple[str, datetime], SignedReceipt] = {}
    for signed in receipts:
        r = signed.receipt
        key = (r.wallet, r.window_start)
        kept = best.get(key)
        if kept is None or _rank(signed) > _rank(kept):
            best[key] = signed
    return [best[key] for key in sorted(best, key=lambda k: (k[1], k[0]))]


def _rank(signed: SignedReceipt) -> tuple:
    r = signed.receipt
    return (r.window_end, r.collector_time, r.heartbeat_time, signed.signature)


def proven_spans(receipts: Iterable[SignedReceipt]) -> list[Span]:
    """The uptime the receipts prove: the union of their windows, as disjoint spans in
    order (a window of no length proves nothing)."""
    return merge((r.receipt.window_start, r.receipt.window_end) for r in receipts)


def merge(spans: Iterable[Span]) -> list[Span]:
    """Disjoint spans in order covering what ``spans`` cover; empty ones dropped."""
    merged: list[Span] = []
    for start, end in sorted(s for s in spans if s[0] < s[1]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def covered(spans: list[Span], start: datetime, end: datetime) -> timedelta:
    """How much of [start, end) the disjoint ``spans`` cover."""
    total = timedelta(0)
    for a, b in spans:
        if a < end and b > start:
            total += min(b, end) - max(a, start)
    return total


def hours(start: datetime, end: datetime) -> Iterator[datetime]:
    """The starts of the UTC hours that overlap [start, end)."""
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while hour < end:
        yield hour
        hour += HOUR


def hourly(spans: list[Span], start: datetime, end: datetime) -> dict[datetime, timedelta]:
    """The time ``spans`` (disjoint, in order) cover in each UTC hour of [start, end) that
    they touch, by the hour's start (clipped to the period at its ends)."""
    found: dict[datetime, timedelta] = {}
    for a, b in spans:
        a, b = max(a, start), min(b, end)
        if a >= b:
            continue
        for hour in hours(a, b):
            found[hour] = found.get(hour, timedelta(0)) + min(b, hour + HOUR) - max(a, hour)
    return found
