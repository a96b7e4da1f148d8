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

    def __init__(self, environ: dict, routes: "Routes") -> None:
        self.started = time.perf_counter()
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET")
        self.path = environ.get("PATH_INFO", "")
        self.body: bytes | None = None
        self.rule, self.view = routes.match(environ, self.path, self.method)

    def header(self, name: str) -> str | None:
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"))

    def marked(self, mark: str) -> bool:
        """Whether the matched view carries ``mark`` (set by a decorator of its feature)."""
        return getattr(self.view, mark, False)


class Routes:
    """Which route a request is for, and its view: a route without parameters (the request
    every worker sends is one) from a table made on the first request, once every route is
    registered, which is a third of what werkzeug's matcher costs; any other by that
    matcher. Both give what Flask's own routing gives."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._fixed: dict[tuple[str, str], tuple[str, Callable]] | None = None

    def match(self, environ: dict, path: str, method: str) -> tuple[str | None, Callable | None]:
        if self._fixed is None:
            self._fixed = {
                (rule.rule, method): (rule.rule, self.app.view_functions[rule.endpoint])
                for rule in self.app.url_map.iter_rules()
                if not rule.arguments
                for method in rule.methods
            }
        found = self._fixed.get((path, method))
        if found is not None:
            return found
        try:
            rule, _ = self.app.url_map.bind_to_environ(environ).match(return_rule=True)
        except HTTPException:
            return None, None  # no such path or method, or a redirect: Flask raises it again
        return rule.rule, self.app.view_functions.get(rule.endpoint)


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
