"""What a cross-cutting step is (``Step``) and what it knows of a request (``Call``): the
pieces of collector/web/pipeline.py that the steps' own modules import. A leaf: it imports
nothing of the collector's."""

import time
from collections.abc import Callable

from flask import Flask, Response
from werkzeug.exceptions import HTTPException


class Call:
    """What the steps know of one request: its environ, method and path, and the route it
    matched (``rule`` is None for a path or method no route has)."""

    __slots__ = ("environ", "method", "path", "rule", "view", "started", "body")

    def __init__(self, environ: dict, app: Flask) -> None:
        self.started = time.perf_counter()
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET")
        self.path = environ.get("PATH_INFO", "")
        self.body: bytes | None = None
        self.rule: str | None = None
        self.view: Callable | None = None
        try:
            rule, _ = app.url_map.bind_to_environ(environ).match(return_rule=True)
        except HTTPException:
            pass  # no such path or method, or a redirect: Flask raises it again
        else:
            self.rule = rule.rule
            self.view = app.view_functions.get(rule.endpoint)

    def header(self, name: str) -> str | None:
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"))

    def marked(self, mark: str) -> bool:
        """Whether the matched view carries ``mark`` (set by a decorator of its feature)."""
        return getattr(self.view, mark, False)


class Step:
    """One cross-cutting rule: ``before`` may refuse the request by raising (an ApiError);
    ``after`` sees every answer, refusals and errors included."""

    def before(self, call: Call) -> None:
        pass

    def after(self, call: Call, response: Response) -> Response:
        return response


WITHOUT_FLASK = "tassium_without_flask"


def without_flask(view: Callable[[Call], Response]) -> Callable[[Call], Response]:
    """Mark a view that takes the ``Call`` and needs no Flask request context. It may declare
    no access rule (collector/web/api.py's Authenticate reads Flask's request)."""
    setattr(view, WITHOUT_FLASK, True)
    return view
