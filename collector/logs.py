"""Log lines that a caller cannot forge: every control character that reaches a log message
(a newline in a decoded path, an escape sequence in a User-Agent) is written escaped, so one
request is always one line and a terminal reading the log runs nothing."""

import logging
import sys

from gunicorn import glogging

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROLS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]
_ESCAPES = {
    code: {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}.get(code, f"\\x{code:02x}")
    if code < 0x100
    else f"\\u{code:04x}"
    for code in _CONTROLS
}
FORMAT = "%(levelname)s %(name)s: %(message)s"


def escape(text: str) -> str:
    return text.translate(_ESCAPES)


class EscapingFormatter(logging.Formatter):
    """Escapes the formatted message; a traceback appended after it keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return escape(super().formatMessage(record))


def configure(level: str) -> None:
    """The commands' logging: stderr, escaped (systemd's journal takes it from there)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])


class GunicornLogger(glogging.Logger):
    """gunicorn's error and access logs through the same escaping."""

    def _set_handler(self, log, output, fmt, stream=None):
        escaped = EscapingFormatter(fmt._fmt, fmt.datefmt) if fmt is not None else fmt
        return super()._set_handler(log, output, escaped, stream)
