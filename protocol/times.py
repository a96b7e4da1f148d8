"""Time on the wire: RFC 3339 in, ``2026-11-24T21:00:00Z`` out, always UTC inside."""

import re
from datetime import UTC, datetime, timedelta

from protocol import ProtocolError

# RFC 3339 insists on the "T"-separated date and time and on an explicit offset; a naive
# timestamp would silently mean the sender's local time.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")

# Uptime is about machines running now: a bounded range keeps every later step (a day back
# for a default range, the offset to UTC) inside what datetime and both databases can hold.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def parse_timestamp(value: object, field: str = "timestamp") -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime, or raise ProtocolError."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ProtocolError(
            f"{field} must be an RFC 3339 time with an offset, like 2026-11-24T21:00:00Z"
        )
    try:
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00")).astimezone(UTC)
    except ValueError as exc:
        raise ProtocolError(f"{field} is not a real date and time: {exc}") from None
    except OverflowError:
        parsed = None  # 0001-01-01T00:00:00+01:00: before the first representable instant
    if parsed is None or not EARLIEST <= parsed < LATEST:
        raise ProtocolError(
            f"{field} must lie from {format_timestamp(EARLIEST)} to before "
            f"{format_timestamp(LATEST)}"
        )
    return parsed


def _seconds(v: datetime) -> str:
    # Written out: strftime cost a heartbeat's answer more than the rest of its formatting.
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"


def format_timestamp(value: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with a ``Z``; sub-seconds only when present."""
    v = value.astimezone(UTC)
    text = _seconds(v)
    if v.microsecond:
        text += f".{v.microsecond:06d}"
    return text + "Z"


def format_millis(value: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with exactly three fractional digits
    (truncated): the collector's clock as agents read it. A fixed width keeps every answer
    alike, and finer digits would be noise beside a request's round trip."""
    # isoformat truncates to the timespec, as this does, in about half the time of writing
    # it out (once per heartbeat answer, and four times per receipt); a UTC time's offset is
    # always "+00:00".
    v = value if value.tzinfo is UTC else value.astimezone(UTC)
    return v.isoformat(timespec="milliseconds")[:-6] + "Z"


def to_millis(value: datetime) -> datetime:
    """An aware datetime in UTC, truncated to the millisecond: the instant ``format_millis``
    writes, so that a value kept as this compares equal to what its text reads back as."""
    if value.tzinfo is None:
        # A naive datetime would silently mean the machine's local time.
        raise ValueError("a time must be an aware datetime, not a naive one")
    # The common case (a UTC time, as the collector holds them) without astimezone, and a
    # subtraction rather than replace(): a receipt truncates four times per heartbeat.
    v = value if value.tzinfo is UTC else value.astimezone(UTC)
    extra = v.microsecond % 1000
    return v - timedelta(microseconds=extra) if extra else v


def utcnow() -> datetime:
    return datetime.now(UTC)
