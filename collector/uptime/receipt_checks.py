"""Checking a receipt file (issue 24): what an owner disputing a payout, or an auditor checking
one, asks the collector. ``tassium-collector verify-receipts FILE`` and ``POST
/receipts/verify`` (collector/uptime/receipt_check_routes.py) both read the file with
``read``, choose the period with ``period_for`` and show what ``check`` finds.

Every receipt is checked against the keys the collector published (collector/identity/
collector_key.py's ``history``): the key its ``keyId`` names, the signature over its body
(collector/identity/signatures.py, the one signature check), the key valid at its
``collectorTime``, and the file's wallet. A refused receipt gets a sentence; the others
prove uptime (protocol/receipt_files.py), which is compared hour by hour with the
collector's records of that wallet. The receipts stand alone: a worker whose records, or
whose row, are gone still gets its proof, beside records of nothing.

Nothing here writes to the database.
"""

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from collector.identity.collector_key import history
from collector.identity.signatures import load_public_key, verify
from collector.store.models import CollectorKeyRecord, OpenWindow, UptimeRecord, Worker
from protocol import ProtocolError
from protocol.periods import Period
from protocol.receipt_files import (
    HOUR,
    ReceiptFile,
    Span,
    covered,
    foreign,
    hourly,
    latest_per_window,
    merge,
    proven_spans,
)
from protocol.receipts import SignedReceipt
from protocol.times import format_millis, format_timestamp
from protocol.wallets import normalize_wallet

# Receipts are written to the millisecond and records to the microsecond, so an hour's two
# figures may differ by up to a millisecond at each edge of a window: only a second or more
# is a disagreement.
TOLERANCE = timedelta(seconds=1)
PRECISION = (
    "receipts are exact to the millisecond and records to the microsecond, so only hours "
    "that differ by a second or more are listed"
)
RECORDS_LACK = "the collector's records lack uptime its receipts prove"
RECEIPTS_LACK = (
    "the records show more than these receipts prove: the owner's receipts may be incomplete"
)


class Unreadable(Exception):
    """The file cannot be checked at all: one sentence saying why."""


def read(data: bytes, wallet_format: str) -> ReceiptFile:
    """The receipt file in ``data``, its wallet in the collector's stored form."""
    try:
        file = ReceiptFile.from_bytes(data)
    except ProtocolError as exc:
        raise Unreadable(str(exc)) from None
    try:
        wallet = normalize_wallet(file.wallet, wallet_format)
    except ProtocolError as exc:
        raise Unreadable(
            f"the file's walletAddress is not a wallet of this collector: {exc}"
        ) from None
    # A checksummed address is the same wallet as the lower-case one its receipts name.
    return ReceiptFile(wallet, file.receipts, file.collector, file.period)


def period_for(file: ReceiptFile, asked: Period | None, now: datetime) -> Period | None:
    """The period asked for, else the file's (None: neither, and ``check`` compares the
    whole UTC hours its valid receipts span)."""
    if asked is not None or file.period is None:
        return asked
    try:
        return Period.parse(file.period, now)
    except ValueError as exc:
        raise Unreadable(f"the file's period: {exc}") from None


def _spanned(receipts: list[SignedReceipt]) -> Period | None:
    """The whole UTC hours the receipts' windows reach into. Only valid receipts are measured
    so: a forged one could name any window, and every hour of it would be compared."""
    if not receipts:
        return None
    start = min(r.receipt.window_start for r in receipts)
    last = max(r.receipt.window_end for r in receipts)
    start = start.replace(minute=0, second=0, microsecond=0)
    end = last.replace(minute=0, second=0, microsecond=0)
    if end < last or end == start:
        end += HOUR
    return Period(start, end, f"{format_timestamp(start)}/{format_timestamp(end)}")


@dataclass(frozen=True)
class Hour:
    """One UTC hour where the receipts and the records disagree."""

    start: datetime
    proven: timedelta
    recorded: timedelta

    @property
    def meaning(self) -> str:
        return RECORDS_LACK if self.proven > self.recorded else RECEIPTS_LACK


@dataclass(frozen=True)
class Verdict:
    """What ``check`` found, for the command to print and the route to answer."""

    wallet: str
    period: Period | None
    receipts: int  # in the file
    refused: list[tuple[int, str]]  # (its number in the file, from 1; why)
    keys: list[str]  # the keys the valid receipts were signed with
    worker_known: bool
    proven: timedelta
    recorded: timedelta
    hours: list[Hour]  # those that disagree, in order

    @property
    def ok(self) -> bool:
        return not self.refused and not self.hours


def check(file: ReceiptFile, period: Period | None) -> Verdict:
    """Check every receipt of ``file`` (read by ``read``) and compare what the valid ones
    prove over ``period`` (``period_for``'s) with the collector's records."""
    keys = {k.key_id: k for k in history()}
    loaded: dict[str, Ed25519PublicKey] = {}
    elsewhere = set(foreign(file))
    refused, valid = [], []
    for number, signed in enumerate(file.receipts, 1):
        reason = _refusal(signed, keys, loaded, number in elsewhere)
        if reason is None:
            valid.append(signed)
        else:
            refused.append((number, reason))
    proven = proven_spans(latest_per_window(valid))
    period = period or _spanned(valid)
    known = Worker.select().where(Worker.wallet_address == file.wallet).exists()
    recorded: list[Span] = []
    if period is not None and known:
        recorded = _recorded(file.wallet, period)
    return Verdict(
        wallet=file.wallet,
        period=period,
        receipts=len(file.receipts),
        refused=refused,
        keys=sorted({r.receipt.key_id for r in valid}),
        worker_known=known,
        proven=covered(proven, period.start, period.end) if period else timedelta(0),
        recorded=covered(recorded, period.start, period.end) if period else timedelta(0),
        hours=_disagreeing(proven, recorded, period) if period else [],
    )


def _refusal(
    signed: SignedReceipt,
    keys: dict[str, CollectorKeyRecord],
    loaded: dict[str, Ed25519PublicKey],
    for_another_wallet: bool,
) -> str | None:
    """Why the receipt is refused, or None when it is valid."""
    r = signed.receipt
    key = keys.get(r.key_id)
    if key is None:
        return f"signed by key {r.key_id}, which this collector never published"
    if r.key_id not in loaded:
        loaded[r.key_id] = load_public_key(key.public_key)
    try:
        signature = base64.b64encode(signed.signature).decode("ascii")
        verify(loaded[r.key_id], signed.message(), signature)
    except ProtocolError:
        return "the signature does not match its body: it was changed after the collector signed it"
    at = format_millis(r.collector_time)
    if r.collector_time < key.valid_from:
        return (
            f"signed with key {r.key_id} at {at}, before that key was valid "
            f"(from {format_millis(key.valid_from)})"
        )
    if key.valid_until is not None and r.collector_time >= key.valid_until:
        return (
            f"signed with key {r.key_id} at {at}, after it was retired at "
            f"{format_millis(key.valid_until)}"
        )
    if for_another_wallet:
        return f"is for another wallet ({r.wallet})"
    return None


def _recorded(wallet: str, period: Period) -> list[Span]:
    """The collector's records of the wallet's uptime that overlap the period: its closed
    windows and its open one, as disjoint spans."""
    spans: list[Span] = []
    for first, last in (
        (UptimeRecord.time_from, UptimeRecord.time_to),
        (OpenWindow.start_time, OpenWindow.end_time),
    ):
        model = first.model
        rows = model.select(first, last).where(
            (model.worker == wallet) & (last >= period.start) & (first < period.end)
        )
        spans.extend(rows.tuples())
    return merge(spans)


def _disagreeing(proven: list[Span], recorded: list[Span], period: Period) -> list[Hour]:
    by_proof = hourly(proven, period.start, period.end)
    by_record = hourly(recorded, period.start, period.end)
    hours = []
    for start in sorted(by_proof.keys() | by_record.keys()):
        one, other = by_proof.get(start, timedelta(0)), by_record.get(start, timedelta(0))
        if abs(one - other) >= TOLERANCE:
            hours.append(Hour(start, one, other))
    return hours
