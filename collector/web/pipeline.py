"""Every request's one way in: a list of cross-cutting steps (the request's timing, its body
read within limits, rate limits, authentication, the database's state, CORS, the clock on
the heartbeat routes), run in order before the route's view and in reverse order after it,
for every route alike. The application factory (collector/app.py) makes the list; nothing
else registers a Flask hook, so a rule added there applies to every route
(tests/collector/web/test_pipeline.py checks that it does).

Flask only routes and runs views. An error anywhere, in a step or a view, is answered here,
in one place (``error_answer``), and still passes every step's ``after``. A view marked
``without_flask`` (``POST /heartbeat``, the request every worker sends) is called with the
``Call`` and no Flask request context, which is a sixth of the collector's CPU at saturation;
it passes the same steps as every other view.
"""

import logging
from collections.abc import Callable, Iterable, Sequence

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError

from collector.errors import ApiError
from collector.store import db
from collector.web.database_state import database_down
from collector.web.steps import WITHOUT_FLASK, Call, Routes, Step

log = logging.getLogger(__name__)


class Pipeline:
    """The WSGI application: the steps around Flask's routing and views."""

    def __init__(self, app: Flask, steps: Sequence[Step]):
        self.app = app
        self.steps = tuple(steps)
        self.routes = Routes(app)
        # Flask raises every error to us instead of answering it itself (error_answer does).
        app.config["PROPAGATE_EXCEPTIONS"] = True
        app.config["TRAP_HTTP_EXCEPTIONS"] = True

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        with self.app.app_context():
            call = Call(environ, self.routes)
            try:
                response = self.answer(call)
            except BaseException:
                db.release()
                raise
        if response.is_streamed:
            response.call_on_close(db.release)  # its body may still read the database
        else:
            db.release()
        return response(environ, start_response)

    def answer(self, call: Call) -> Response:
        if call.marked(WITHOUT_FLASK):
            return self._through(call, call.view)
        # The steps run inside the request's context: they may read Flask's ``request``.
        with self.app.request_context(call.environ):
            return self._through(call, lambda _: self.app.full_dispatch_request())

    def _through(self, call: Call, view: Callable[[Call], Response]) -> Response:
        try:
            for step in self.steps:
                step.before(call)
            response = view(call)
        except Exception as exc:
            response = self.error_answer(exc, call)
        # Every step sees every answer, a refusal by an earlier step's before included.
        for step in reversed(self.steps):
            response = step.after(call, response)
        return response

    def error_answer(self, exc: Exception, call: Call) -> Response:
        """The answer to an error, wherever it was raised: ``{"error": ...}`` with its status
        and headers; a database outage 503 (collector/web/database_state.py); anything else
        logged and 500."""
        if isinstance(exc, ApiError):
            response = jsonify(exc.answer())
            response.status_code = exc.status
            response.headers.update(exc.headers or {})
            return response
        if isinstance(exc, HTTPException):
            response = jsonify(error=exc.description)
            response.status_code = exc.code or 500
            # The headers that go with the status, such as a 405's Allow (RFC 9110).
            for name, value in exc.get_headers():
                if name.lower() != "content-type":
                    response.headers[name] = value
            return response
        if isinstance(exc, db.DATABASE_DOWN):
            return database_down(exc)
        log.error("Exception on %s [%s]", call.path, call.method, exc_info=exc)
        response = jsonify(error=InternalServerError.description)
        response.status_code = 500
        return response


def install(app: Flask, steps: Sequence[Step]) -> Pipeline:
    """Put the steps in front of the app's views (see the module's docstring)."""
    pipeline = Pipeline(app, steps)
    app.wsgi_app = pipeline
    app.extensions["tassium.pipeline"] = pipeline
    return pipeline
