"""Request bodies are read whole, bounded in size and time, before any view runs.

A step of collector/web/pipeline.py reads at most ``max_body_bytes`` within ``body_timeout``
seconds and hands the view the bytes in memory. So no view (and no database connection, which
Peewee opens on a view's first query) waits on a client that trickles its body, a chunked
body is held to the same limit as one with a Content-Length, and what gunicorn raises on a
malformed chunked body becomes a 400 instead of a 500. A refused body is an ApiError like any
other refusal, so CORS and every other step still apply to its answer.
"""

import io
import time
from contextlib import AbstractContextManager, nullcontext

from gevent import Timeout
from gevent.monkey import is_module_patched
from gunicorn.http.errors import (
    ChunkMissingTerminator,
    InvalidChunkSize,
    NoMoreData,
    ParseException,
)

from collector.errors import ApiError, body_too_large
from collector.web.steps import Call, Step

_STEP = 64 * 1024
# What gunicorn raises on a malformed body (chunk errors were OSErrors before gunicorn 23).
_MALFORMED = (ParseException, InvalidChunkSize, ChunkMissingTerminator)
# gunicorn echoes the offending bytes into its messages: enough of them to find the mistake.
_MAX_DETAIL = 200


class _TooSlow(Exception):
    """Raised into a read still blocked at the deadline. An Exception (not gevent's Timeout,
    a BaseException) so that gunicorn marks the body as failed and closes the connection."""


class ReadBody(Step):
    """The whole body in memory (``call.body``; None when the request has none), or the
    request refused."""

    def __init__(self, *, max_bytes: int, timeout: float):
        self.max_bytes = max_bytes
        self.timeout = timeout

    def before(self, call: Call) -> None:
        environ = call.environ
        call.body = body = self.read(environ)
        if body is not None:
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            # The body is no longer chunked: it is these bytes, whatever the client sent.
            environ.pop("HTTP_TRANSFER_ENCODING", None)

    def read(self, environ: dict) -> bytes | None:
        """The body, or None when the request has none; ApiError when it is refused."""
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        declared = environ.get("CONTENT_LENGTH") or None
        if not chunked and declared is None:
            return None
        if chunked:
            # One byte past the limit proves the body too large without reading the rest.
            wanted = self.max_bytes + 1
        else:
            try:
                wanted = int(declared)
            except ValueError:
                raise ApiError(400, "Content-Length must be a whole number of bytes") from None
            if wanted < 0:
                raise ApiError(400, "Content-Length must be a whole number of bytes")
            if wanted > self.max_bytes:
                raise self.too_large()
        stream = environ["wsgi.input"]
        deadline = time.monotonic() + self.timeout
        parts, received = [], 0
        try:
            with _interrupt_after(self.timeout):
                while received < wanted:
                    if time.monotonic() >= deadline:
                        raise _TooSlow
                    part = stream.read(min(_STEP, wanted - received))
                    if not part:
                        break
                    parts.append(part)
                    received += len(part)
        except (_TooSlow, TimeoutError):
            raise ApiError(
                408,
                f"request body did not arrive within {self.timeout:g} seconds",
            ) from None
        except NoMoreData:
            raise ApiError(400, "the connection closed before the request body ended") from None
        except _MALFORMED as exc:
            detail = str(exc)[:_MAX_DETAIL]
            raise ApiError(400, f"malformed request body: {detail}") from None
        if received > self.max_bytes:
            raise self.too_large()
        if not chunked and received < wanted:
            raise ApiError(400, f"request body ended after {received} of {wanted} bytes")
        return b"".join(parts)

    def too_large(self) -> ApiError:
        return body_too_large(self.max_bytes)


def _interrupt_after(seconds: float) -> AbstractContextManager:
    """Under gevent (how ``serve`` runs the collector) the deadline interrupts a read wherever
    it waits: gunicorn's reader loops over recv() until it has what was asked for, so a
    client sending a byte now and then would outlast any per-recv socket time-out. Elsewhere
    (the test client) bodies are already in memory and never block."""
    if is_module_patched("socket"):
        return Timeout(seconds, _TooSlow)
    return nullcontext()
