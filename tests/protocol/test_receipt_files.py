"""The receipt file an owner sends, and the uptime a set of receipts proves
(protocol/receipt_files.py): the rules both the agent and the collector count by."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from protocol import ProtocolError
from protocol.receipt_files import (
    FILE_TYPE,
    ReceiptFile,
    covered,
    foreign,
    hourly,
    latest_per_window,
    merge,
    proven_spans,
)
from protocol.receipts import Receipt, SignedReceipt

WALLET = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
OTHER = "0xfb6916095ca1df60bb79ce92ce3ea74c37c5d359"
T0 = datetime(2026, 11, 24, 21, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def receipt(start: int, end: int, *, wallet: str = WALLET, signed_at: int | None = None):
    """A receipt of the window from ``start`` to ``end`` minutes after T0, its heartbeat the
    window's last; the signature's bytes tell receipts apart (nothing here checks them)."""
    at = T0 + end * MINUTE
    body = Receipt(
        key_id="k1",
        wallet=wallet,
        heartbeat_time=at,
        heartbeat_sha256=f"{end:064x}",
        window_start=T0 + start * MINUTE,
        window_end=at,
        counted_millis=0,
        credits_millis=0,
        collector_time=at + (signed_at or 0) * MINUTE,
    )
    return SignedReceipt(body, bytes([end % 256]) * 64)


def test_a_file_reads_back_as_written():
    kept = (receipt(0, 5), receipt(10, 20))
    sent = ReceiptFile(WALLET, kept, "https://collector.example", "2026-11")
    data = sent.to_bytes()

    assert ReceiptFile.from_bytes(data) == sent
    # One receipt per line, for a person to read and diff.
    assert len(data.decode().splitlines()) == 3 + len(kept)  # head, "receipts": [, ]}
    assert json.loads(data)["type"] == FILE_TYPE


@pytest.mark.parametrize(
    ("data", "sentence"),
    [
        (b"\xff", "must be JSON"),
        (b"[]", '"type": "tassium-receipts"'),
        (b'{"type": "tassium-receipts", "v": 2}', "version 2 is not one this program reads"),
        (b'{"type": "tassium-receipts", "v": 1, "receipts": []}', "names its walletAddress"),
        (b"[" * 100_000, "deeper than any receipt file"),
        (
            json.dumps(
                {"type": FILE_TYPE, "v": 1, "walletAddress": WALLET, "receipts": [{}]}
            ).encode(),
            "receipt 1:",
        ),
    ],
)
def test_a_bad_file_is_refused_with_a_sentence(data, sentence):
    with pytest.raises(ProtocolError, match=sentence):
        ReceiptFile.from_bytes(data)


def test_receipts_for_another_wallet_are_named_by_number():
    sent = ReceiptFile(WALLET, (receipt(0, 5), receipt(0, 5, wallet=OTHER), receipt(9, 10)))
    assert foreign(sent) == [2]


def test_the_last_receipt_of_a_window_stands_for_it():
    first, later, last = receipt(0, 5), receipt(0, 10), receipt(0, 15)
    other_window = receipt(30, 40)
    # The same window's end signed again later (a replay answered twice) wins by its time.
    resigned = receipt(0, 15, signed_at=1)

    assert latest_per_window([last, first, other_window, later]) == [last, other_window]
    assert latest_per_window([resigned, last]) == [resigned]


def test_the_proof_is_the_union_of_the_windows():
    spans = proven_spans([receipt(0, 10), receipt(5, 15), receipt(20, 20), receipt(30, 40)])
    # Overlapping windows merge, a window of no length proves nothing.
    assert spans == [(T0, T0 + 15 * MINUTE), (T0 + 30 * MINUTE, T0 + 40 * MINUTE)]
    assert merge([(T0, T0 + MINUTE), (T0 + MINUTE, T0 + 2 * MINUTE)]) == [(T0, T0 + 2 * MINUTE)]
    assert covered(spans, T0 + 10 * MINUTE, T0 + 35 * MINUTE) == 10 * MINUTE


def test_hourly_cuts_at_utc_hours_and_clips_to_the_period():
    spans = [(T0 + 50 * MINUTE, T0 + 130 * MINUTE)]  # 21:50 to 23:10
    found = hourly(spans, T0, T0 + 3 * 60 * MINUTE)
    assert found == {
        T0: 10 * MINUTE,
        T0 + 60 * MINUTE: 60 * MINUTE,
        T0 + 120 * MINUTE: 10 * MINUTE,
    }
    # A period ending mid-hour: only what lies inside it.
    assert hourly(spans, T0 + 55 * MINUTE, T0 + 65 * MINUTE) == {
        T0: 5 * MINUTE,
        T0 + 60 * MINUTE: 5 * MINUTE,
    }
    assert hourly(spans, T0 + 200 * MINUTE, T0 + 300 * MINUTE) == {}
