"""collector.logs: nothing a caller sends can add a line to the collector's logs."""

import logging
import socket
import sys

import httpx
import pytest

from collector.logs import EscapingFormatter, escape
from tests.polling import wait_for


@pytest.mark.parametrize(
    "text, shown",
    [
        ("a\nINFO forged", "a\\nINFO forged"),
        ("a\r\nb", "a\\r\\nb"),
        ("\x1b[2Jcleared", "\\x1b[2Jcleared"),
        ("nel\x85", "nel\\x85"),
        ("sep\u2028arator", "sep\\u2028arator"),
        ("plain é 😀 text", "plain é 😀 text"),
    ],
)
def test_escape_leaves_no_control_character(text, shown):
    assert escape(text) == shown


def test_a_logged_message_stays_one_line_while_a_traceback_keeps_its_lines():
    formatter = EscapingFormatter("%(levelname)s %(message)s")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "Exception on %s", ("/a\nINFO forged",), sys.exc_info()
        )
    lines = formatter.format(record).splitlines()
    assert lines[0] == "ERROR Exception on /a\\nINFO forged"
    assert lines[1] == "Traceback (most recent call last):"


def test_the_served_access_log_escapes_what_a_client_sends(serve_collector):
    collector = serve_collector(processes=1)
    host, port = collector.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        # Bytes gunicorn takes in a header value, as latin-1: NEL (\x85) ends a line for some
        # log readers.
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: ua\xc2\x85INFO forged\r\n"
            b"Connection: close\r\n\r\n"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
    line = wait_for(
        lambda: next((x for x in collector.log.read_text().splitlines() if "ua" in x), None),
        "the access log line",
    )
    # gunicorn reads header bytes as latin-1: \xc2 is "Â", \x85 the NEL that is escaped.
    assert "ua\u00c2\\x85INFO forged" in line


def test_with_the_access_log_off_a_request_leaves_no_line(serve_collector):
    """access_log: false (for a fleet whose heartbeats would fill the log); the server's
    own lines stay."""
    collector = serve_collector(processes=1, access_log=False, log_level="INFO")
    for marker in ("first-marker", "second-marker"):
        httpx.get(collector.url + "/healthz", headers={"User-Agent": marker}, timeout=10)
    # A line the server does log, written after the requests: the log is read after it.
    collector.stop()
    text = collector.log.read_text()
    assert "Booting worker" in text or "Starting gunicorn" in text
    assert "marker" not in text
