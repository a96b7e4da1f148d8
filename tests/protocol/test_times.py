"""protocol/times.py: RFC 3339 in, ``...Z`` out, UTC inside."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from protocol import ProtocolError
from protocol.times import format_millis, format_timestamp, parse_timestamp, to_millis


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-24T21:00:00Z", datetime(2026, 11, 24, 21, 0, 0, tzinfo=UTC)),
        ("2026-11-24t21:00:00z", datetime(2026, 11, 24, 21, 0, 0, tzinfo=UTC)),
        ("2026-11-24T21:00:00+00:00", datetime(2026, 11, 24, 21, 0, 0, tzinfo=UTC)),
        ("2026-11-24T21:00:00-00:00", datetime(2026, 11, 24, 21, 0, 0, tzinfo=UTC)),
        ("2026-11-24T23:30:00+02:30", datetime(2026, 11, 24, 21, 0, 0, tzinfo=UTC)),
        # A negative offset that moves the time into the next day (and month and year).
        ("2026-12-31T19:00:00-05:00", datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC)),
        ("2026-11-24T21:00:00.5Z", datetime(2026, 11, 24, 21, 0, 0, 500000, tzinfo=UTC)),
        ("2026-11-24T21:00:00.123456Z", datetime(2026, 11, 24, 21, 0, 0, 123456, tzinfo=UTC)),
        (
            "2026-11-24T22:00:00.000001+01:00",
            datetime(2026, 11, 24, 21, 0, 0, 1, tzinfo=UTC),
        ),
        ("2028-02-29T00:00:00Z", datetime(2028, 2, 29, tzinfo=UTC)),
    ],
)
def test_it_parses_rfc3339_into_utc(text, expected):
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("2026-11-24T21:00:00", id="naive"),
        pytest.param("2026-11-24", id="date-only"),
        pytest.param("21:00:00Z", id="time-only"),
        pytest.param("2026-11-24 21:00:00Z", id="space-separator"),
        pytest.param("2026-11-24T21:00Z", id="no-seconds"),
        pytest.param("2026-11-24T21:00:00+0200", id="offset-without-colon"),
        pytest.param("2026-11-24T21:00:00+02", id="offset-hours-only"),
        pytest.param("2026-11-24T21:00:00.Z", id="empty-fraction"),
        pytest.param("20261124T210000Z", id="basic-format"),
        pytest.param(" 2026-11-24T21:00:00Z", id="leading-space"),
        pytest.param("2026-11-24T21:00:00Z\n", id="trailing-newline"),
        pytest.param("", id="empty"),
    ],
)
def test_it_rejects_text_that_is_not_rfc3339_with_an_offset(text):
    with pytest.raises(ProtocolError, match="RFC 3339 time with an offset"):
        parse_timestamp(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("2026-02-30T00:00:00Z", id="feb-30"),
        pytest.param("2027-02-29T00:00:00Z", id="feb-29-not-leap"),
        pytest.param("2026-13-01T00:00:00Z", id="month-13"),
        pytest.param("2026-11-24T24:00:00Z", id="hour-24"),
        pytest.param("2026-11-24T21:60:00Z", id="minute-60"),
        pytest.param("2026-11-24T21:00:00+24:00", id="offset-24h"),
        pytest.param("\u0662\u0660\u0662\u0666-11-24T21:00:00Z", id="non-ascii-digits"),
    ],
)
def test_it_rejects_a_well_formed_time_that_does_not_exist(text):
    with pytest.raises(ProtocolError):
        parse_timestamp(text)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-24T21:00:00.123456789Z",  # Go's RFC3339Nano, date +%N
        "2026-11-24T21:00:00.1234569Z",
        "2026-11-24T23:00:00.123456999+02:00",
    ],
)
def test_it_accepts_more_than_six_fraction_digits_and_keeps_microseconds(text):
    # RFC 3339 allows any number of digits after the point; microseconds are what we keep.
    assert parse_timestamp(text) == datetime(2026, 11, 24, 21, 0, 0, 123456, tzinfo=UTC)


def test_it_says_the_date_is_not_real_for_feb_30():
    with pytest.raises(ProtocolError, match="not a real date and time"):
        parse_timestamp("2026-02-30T00:00:00Z")


@pytest.mark.parametrize("value", [None, 1764018000, 1764018000.0, b"2026-11-24T21:00:00Z"])
def test_it_rejects_a_timestamp_that_is_not_a_string(value):
    with pytest.raises(ProtocolError):
        parse_timestamp(value)


def test_it_names_the_field_in_its_message():
    with pytest.raises(ProtocolError, match="^from must be"):
        parse_timestamp("yesterday", "from")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2026, 11, 24, 21, 0, 0, tzinfo=UTC), "2026-11-24T21:00:00Z"),
        (datetime(2026, 11, 24, 21, 0, 0, 250000, tzinfo=UTC), "2026-11-24T21:00:00.250000Z"),
        (datetime(2026, 11, 24, 21, 0, 0, 1, tzinfo=UTC), "2026-11-24T21:00:00.000001Z"),
        (
            datetime(2026, 11, 25, 1, 30, 0, tzinfo=timezone(timedelta(hours=4, minutes=30))),
            "2026-11-24T21:00:00Z",
        ),
        (
            datetime(1999, 12, 31, 19, 0, 0, tzinfo=timezone(timedelta(hours=-5))),
            "2000-01-01T00:00:00Z",
        ),
    ],
)
def test_it_formats_an_aware_time_as_utc_with_a_z(value, text):
    assert format_timestamp(value) == text


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 11, 24, 21, 0, 0, tzinfo=UTC),
        datetime(2026, 11, 24, 21, 0, 0, 999999, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, 0, 42, tzinfo=timezone(timedelta(hours=2))),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(9998, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_format_then_parse_gives_back_the_same_instant(value):
    assert parse_timestamp(format_timestamp(value)) == value


@pytest.mark.parametrize(
    "text",
    ["2026-11-24T21:00:00Z", "2026-11-24T21:00:00.000001Z", "2026-02-28T23:59:59.500000Z"],
)
def test_parse_then_format_gives_back_the_canonical_text(text):
    assert format_timestamp(parse_timestamp(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",  # before datetime's first instant once in UTC
        "9999-12-31T23:59:59-01:00",  # after its last
        "1969-12-31T23:59:59.999999Z",
        "9999-01-01T00:00:00Z",
    ],
)
def test_a_time_outside_the_supported_range_is_a_clear_error(text):
    with pytest.raises(ProtocolError, match="must lie from 1970-01-01T00:00:00Z to before 9999"):
        parse_timestamp(text)


def test_the_edges_of_the_supported_range():
    assert parse_timestamp("1970-01-01T00:00:00Z") == datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_timestamp("9998-12-31T23:59:59.999999Z").year == 9998


def test_to_millis_keeps_utc_to_the_millisecond_as_format_millis_writes_it():
    there = timezone(timedelta(hours=-5))
    value = to_millis(datetime(2026, 11, 24, 16, 0, 0, 999999, tzinfo=there))
    assert value == datetime(2026, 11, 24, 21, 0, 0, 999000, tzinfo=UTC)
    assert value.tzinfo is UTC
    assert parse_timestamp(format_millis(value)) == value


def test_to_millis_refuses_a_naive_time():
    with pytest.raises(ValueError, match="aware datetime"):
        to_millis(datetime(2026, 11, 24, 21, 0))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2026, 11, 24, 21, 0, tzinfo=UTC), "2026-11-24T21:00:00.000Z"),
        (datetime(2026, 11, 24, 21, 0, 0, 999999, tzinfo=UTC), "2026-11-24T21:00:00.999Z"),
        (
            datetime(2026, 11, 24, 19, 0, 0, 1000, tzinfo=timezone(timedelta(hours=-2))),
            "2026-11-24T21:00:00.001Z",
        ),
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00.000Z"),
    ],
)
def test_format_millis_writes_utc_with_three_truncated_digits(value, text):
    assert format_millis(value) == text
