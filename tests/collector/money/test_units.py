"""collector/money/units.py: figures as people read them, and the refusal of a payout before
its period is final (collector/money/payouts.py's Settling)."""

from datetime import timedelta

import pytest

from collector.money import payouts, units
from collector.money.reports import Period
from protocol.times import parse_timestamp


@pytest.mark.parametrize(
    ("value", "text"),
    [(81786, "81.786"), (72850, "72.85"), (1500, "1.5"), (3000, "3"), (0, "0"), (7, "0.007")],
)
def test_thousandths_read_exactly_in_their_unit(value, text):
    assert units.thousandths(value) == text


@pytest.mark.parametrize(
    ("fraction", "text"),
    [
        (1.0, "100.0 %"),
        (0.999999, "99.9 %"),  # short of full uptime never reads as 100.0 %
        (0.9995, "99.9 %"),
        (0.293, "29.3 %"),  # 292.99999… thousandths as a float, still 29.3
        (0.002688, "0.2 %"),
        (0.0, "0.0 %"),
        (None, "-"),
    ],
)
def test_a_fraction_is_a_percentage_with_one_decimal_rounded_down(fraction, text):
    assert units.percent(fraction) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(24 * 3600, "24 h"), (1800, "30 min"), (5400, "1 h 30 min"), (45, "45 s"), (0, "0 s")],
)
def test_a_duration_reads_in_hours_minutes_and_seconds(seconds, text):
    assert units.duration(timedelta(seconds=seconds)) == text


def test_a_period_not_final_is_refused_saying_why_and_until_when():
    now = parse_timestamp("2026-12-20T00:00:00Z")
    settling = payouts.Settling(timedelta(hours=24), timedelta(minutes=30))
    period = Period.parse("2026-12", now)
    assert settling.final_at(period) == parse_timestamp("2027-01-02T00:30:00Z")
    assert settling.refusal(period) == (
        "2026-12 is not final yet: it ends at 2027-01-01T00:00:00Z, heartbeats may still "
        "arrive up to 24 h late (max_backfill) and a window grows up to 30 min (the gap) past "
        "its last heartbeat, so its figures can change until 2027-01-02T00:30:00Z: record its "
        "payout from then on"
    )
