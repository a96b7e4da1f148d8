"""collector/web/schema.py: a request body decoded into its declared type, or refused with one
sentence that names the field; text no database can store refused however it is encoded."""

from typing import Annotated

import pytest
from msgspec import Meta

from collector.errors import ApiError
from collector.web.schema import Body, decode, refusal


class Entry(Body):
    body: Annotated[str, Meta(extra=refusal("{where} must be text"))]


class Sample(Body):
    name: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=5,
            extra=refusal("{where} must be a string", max_length="{where} is too long"),
        ),
    ]
    entries: list[Entry] = []
    count: int = 0


def refused(raw: bytes) -> str:
    with pytest.raises(ApiError) as caught:
        decode(Sample, raw)
    assert caught.value.status == 400
    return caught.value.message


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"", "request body must be a JSON object"),
        (b"[1]", "request body must be a JSON object"),
        (b"{", "request body is not valid JSON"),
        (b"{}", "name is required"),
        (b'{"name": "a", "nmae": 1}', "unknown field 'nmae'; accepted: count, entries, name"),
        (b'{"name": 5}', "name must be a string"),
        (b'{"name": "abcdef"}', "name is too long"),
        (b'{"name": "a", "entries": [{"body": 1}]}', "entries[0].body must be text"),
        (b'{"name": "a", "entries": [{}]}', "entries[0].body is required"),
        (b'{"name": "a", "entries": [{"x": 1}]}', "unknown field 'x' in entries[0]"),
        (b'{"name": "a", "count": "1"}', "count: expected int, got str"),
    ],
)
def test_a_body_is_refused_with_a_sentence_that_names_the_field(app, raw, message):
    with app.test_request_context():
        assert message in refused(raw)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b'{"name": "a\\ud800"}', "surrogate"),
        (b'{"name": "a\\u0000"}', "NUL"),
        # Raw surrogate bytes, which Python's JSON decoder lets through (surrogatepass).
        (b'{"name": "a\xed\xa0\x80"}', "surrogate"),
        ('{"name": "a\\ud800"}'.encode("utf-16-le"), "surrogate"),
        ('{"name": "a\ud800"}'.encode("utf-16-le", "surrogatepass"), "surrogate"),
        ('{"name": "a\\u0000"}'.encode("utf-32"), "NUL"),
    ],
    ids=["escaped", "escaped-nul", "utf8-bytes", "utf16-escaped", "utf16-bytes", "utf32-nul"],
)
def test_a_body_with_text_no_database_can_store_is_refused_however_it_is_encoded(app, raw, message):
    with app.test_request_context():
        assert message in refused(raw)


def test_a_plain_body_is_read_as_it_is(app):
    with app.test_request_context():
        decoded = decode(Sample, '{"name": "café", "entries": [{"body": "{}"}]}'.encode())
    assert decoded == Sample(name="café", entries=[Entry(body="{}")])


def test_escaped_text_inside_a_string_is_text(app):
    # A batch entry carries a heartbeat's JSON as text: its escapes are characters, not NULs.
    with app.test_request_context():
        decoded = decode(Sample, b'{"name": "a", "entries": [{"body": "\\\\u0000"}]}')
    assert decoded.entries[0].body == "\\u0000"
