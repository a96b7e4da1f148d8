"""Periods: the spans of time that reports, payouts and receipt files are asked for, read
one way by the collector and the agent alike."""

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from protocol import ProtocolError
from protocol.times import format_timestamp, parse_timestamp

ROLLING = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
MAX_PERIOD = timedelta(days=366)
_MONTH = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC, and how it was asked for."""

    start: datetime
    end: datetime
    label: str

    @classmethod
    def parse(cls, text: str, now: datetime) -> "Period":
        """``24h``, ``7d``, ``30d`` (up to now), a UTC calendar month ``2026-11``, or an
        RFC 3339 interval ``2026-11-01T00:00:00Z/2026-11-15T00:00:00Z``; ValueError saying
        what is wrong otherwise."""
        if text in ROLLING:
            return cls(now - ROLLING[text], now, text)
        month = _MONTH.fullmatch(text)
        if month:
            year, number = int(month[1]), int(month[2])
            if not (1970 <= year <= 9998 and 1 <= number <= 12):
                raise ValueError(f"period {text}: no such month")
            start = datetime(year, number, 1, tzinfo=UTC)
            days = calendar.monthrange(year, number)[1]
            return cls(start, start + timedelta(days=days), text)
        first, slash, last = text.partition("/")
        if not slash:
            raise ValueError(
                "period must be 24h, 7d, 30d, a month like 2026-11, or an interval like "
                "2026-11-01T00:00:00Z/2026-11-15T00:00:00Z"
            )
        try:
            start, end = parse_timestamp(first, "period start"), parse_timestamp(last, "period end")
        except ProtocolError as exc:
            raise ValueError(str(exc)) from None
        if not start < end <= start + MAX_PERIOD:
            raise ValueError("a period must end after it starts, at most 366 days later")
        return cls(start, end, f"{format_timestamp(start)}/{format_timestamp(end)}")

    @property
    def whole_days(self) -> tuple[date, date]:
        """The first and the day after the last UTC day wholly inside the period."""
        first = self.start.date()
        if self.start != datetime(first.year, first.month, first.day, tzinfo=UTC):
            first += timedelta(days=1)
        return first, self.end.date()
