"""The receipt a credited heartbeat is answered with (issue 24): the collector's signature,
with its current key (collector/identity/collector_key.py), over the canonical body of
protocol/receipts.py. Only a heartbeat that moved a window has one: a refusal, a heartbeat
stored as evidence only (``not_credited``) and one saying Docker was down (no window) are
answered without. It is signed in the heartbeat's transaction, and the window keeps it: the
last receipt of a window stands for the window (an uptime record keeps its window's), and a
payout's Merkle tree is built over them (collector/money/receipt_trees.py).

The answer carries it as ``"receipt": {"body": {...}, "signature": "<base64>"}``
(``SignedReceipt.to_json()``'s form); the body is written as the very canonical bytes that
were signed, so the signature checks over the body exactly as it arrives once its keys are
sorted and its whitespace removed (which is how it arrives)."""

from datetime import datetime, timedelta
from typing import Annotated

from msgspec import Meta

from collector.identity import collector_key
from collector.identity.collector_key import CollectorKey, KeyId
from collector.store.models import OpenWindow
from collector.web.schema import Answer, Wallet, millis_time
from protocol.heartbeat import Heartbeat
from protocol.receipts import MAX_INTEGER, TYPE, VERSION, written
from protocol.times import format_millis

_MILLISECOND = timedelta(milliseconds=1)

# --- the documented form -------------------------------------------------------------------

Millis = millis_time("RFC 3339 UTC with exactly three fractional digits")


class ReceiptBody(Answer):
    """What the collector signs, version 1 (protocol/receipts.py). The signature is over the
    body as canonical JSON: keys sorted, no whitespace, UTF-8."""

    type: Annotated[str, Meta(extra_json_schema={"const": TYPE})]
    v: Annotated[int, Meta(extra_json_schema={"const": VERSION})]
    keyId: KeyId  # noqa: N815 - the wire's names
    walletAddress: Wallet  # noqa: N815
    heartbeatTime: Millis  # noqa: N815
    heartbeatSha256: Annotated[  # noqa: N815
        str,
        Meta(pattern="^[0-9a-f]{64}$", description="SHA-256 of the heartbeat's exact body, hex"),
    ]
    windowStart: Millis  # noqa: N815
    windowEnd: Millis  # noqa: N815 - the window's end once the heartbeat counted
    countedMillis: Annotated[  # noqa: N815
        int, Meta(ge=0, le=MAX_INTEGER, description="the uptime it added, in milliseconds")
    ]
    creditsMillis: Annotated[  # noqa: N815
        int, Meta(ge=0, le=MAX_INTEGER, description="the credits it earned, in thousandths")
    ]
    collectorTime: Millis  # noqa: N815


class SignedReceipt(Answer):
    """A receipt: check ``signature`` over the canonical ``body`` with the key its ``keyId``
    names at /.well-known/tassium-collector.json."""

    body: ReceiptBody
    signature: Annotated[
        str,
        Meta(
            pattern="^[A-Za-z0-9+/]{86}==$",
            description="The Ed25519 signature of the body's canonical bytes, base64",
        ),
    ]


# --- making one ----------------------------------------------------------------------------


class ReceiptSigner:
    """Signs receipts with the collector's key, in each heartbeat's transaction
    (collector/uptime/windows.py's ``Signer``): the receipt as JSON.

    Its values are the collector's own, valid by construction (a stored wallet, times
    within the accepted range, a credited heartbeat at its window's end), so the body is
    written without a Receipt's checks (``protocol.receipts.written``): every test reads
    the receipts back through those checks instead.

    The first receipt a process signs records its key in ``collector_keys`` in the same
    transaction, valid from then on: a process that started while the database was down has
    not recorded it (collector_key.note_start), and no receipt may name a key the collector
    has not published, valid at its time. ``recorded`` is put back by the caller when the
    transaction fails, as the row then was."""

    def __init__(self, key: CollectorKey) -> None:
        self.key = key
        self.recorded = False
        # A group of heartbeats is counted at one time: written once per group.
        self._now: tuple[datetime | None, str] = (None, "")

    def __call__(
        self, beat: Heartbeat, window: OpenWindow, counted: timedelta, earned: int, now: datetime
    ) -> bytes | None:
        if beat.body_sha256 is None:
            return None  # not read from a body: nothing to name
        if not self.recorded:
            collector_key.record(self.key, now)
            self.recorded = True
        if self._now[0] is not now:
            self._now = (now, format_millis(now))
        end = format_millis(window.end_time)
        # A credited heartbeat ends the window it moved: the same time, written once.
        at = end if beat.timestamp == window.end_time else format_millis(beat.timestamp)
        signed = written(
            key_id=self.key.key_id,
            wallet=beat.wallet,
            heartbeat_time=at,
            heartbeat_sha256=beat.body_sha256,
            window_start=format_millis(window.start_time),
            window_end=end,
            counted_millis=counted // _MILLISECOND,
            credits_millis=earned,
            collector_time=self._now[1],
        )
        signature = self.key.sign(signed).encode("ascii")
        return b'{"body":' + signed + b',"signature":"' + signature + b'"}'
