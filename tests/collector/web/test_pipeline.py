"""collector/web/pipeline.py: every request, on every route (POST /heartbeat included), passes
the one list of steps, and nothing else adds a rule to some routes only: Flask keeps no hook
and no error handler of its own."""

import re

import pytest
from flask import Flask

from collector.identity.access import ensure_operator
from collector.uptime.heartbeats import Clock
from collector.web.api import Authenticate, Cors, ensure_page_token
from collector.web.bodies import ReadBody
from collector.web.database_state import DatabaseAnswered
from collector.web.pipeline import Pipeline, install
from collector.web.ratelimits import LimitWrites
from collector.web.steps import Call, Step
from collector.web.telemetry import METRICS, CountRefusedHeartbeats, Timing

# The list, outermost first: a step added to collector/app.py's list must be added here, on
# purpose.
STEPS = [
    Timing,
    CountRefusedHeartbeats,
    DatabaseAnswered,
    Cors,
    ReadBody,
    LimitWrites,
    Authenticate,
    Clock,
]
# Methods Flask answers by itself on every route.
_IMPLICIT = {"HEAD", "OPTIONS"}


def routes(app: Flask) -> list[tuple[str, str, str]]:
    """(rule, method, a URL it matches) for every route and method the app serves."""
    found = []
    for rule in app.url_map.iter_rules():
        url = re.sub(r"<(?:(\w+):)?\w+>", lambda m: "1" if m[1] == "int" else "x", rule.rule)
        found += [(rule.rule, method, url) for method in sorted(rule.methods - _IMPLICIT)]
    return found


def test_every_request_passes_the_one_list_of_steps(app):
    pipeline = app.wsgi_app
    assert isinstance(pipeline, Pipeline)
    assert [type(step) for step in pipeline.steps] == STEPS


def test_flask_keeps_no_hook_of_its_own(app):
    # A hook or handler here would be a rule for some routes only, or a second way to answer.
    for hooks in (
        app.before_request_funcs,
        app.after_request_funcs,
        app.teardown_request_funcs,
        app.url_value_preprocessors,
        app.url_default_functions,
        app.error_handler_spec,
    ):
        assert not any(hooks.values()), hooks
    assert app.wsgi_app.app is app  # no middleware between the steps and Flask


class Recorder(Step):
    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str, str]] = []

    def before(self, call: Call) -> None:
        self.seen.append((call.rule, call.method, "before"))

    def after(self, call, response):
        self.seen.append((call.rule, call.method, "after"))
        response.headers["X-Recorded"] = "yes"
        return response


def test_a_step_added_once_applies_to_every_route(app, client):
    recorder = Recorder()
    # Outermost, so that its before runs also when a step after it refuses the request.
    install(app, [recorder, *app.wsgi_app.steps])
    served = routes(app)
    assert ("/heartbeat", "POST", "/heartbeat") in served
    for rule, method, url in served:
        response = client.open(url, method=method, data=b"{}")
        assert response.headers["X-Recorded"] == "yes", (method, rule)
        assert recorder.seen[-2:] == [(rule, method, "before"), (rule, method, "after")]


def test_every_route_refuses_a_body_too_large_and_is_timed_and_answers_browsers(make_app):
    app = make_app(max_body_bytes=1024, cors_origins=("https://ui.example",))
    client = app.test_client()
    for rule, method, url in routes(app):
        timed = {"route": rule, "method": method, "status": "413"}
        before = METRICS.get_sample_value("tassium_http_request_duration_seconds_count", timed)
        response = client.open(
            url, method=method, data=b"x" * 1025, headers={"Origin": "https://ui.example"}
        )
        assert response.status_code == 413, (method, rule)
        assert "1024 bytes" in response.json["error"]
        assert response.headers["Access-Control-Allow-Origin"] == "https://ui.example"
        after = METRICS.get_sample_value("tassium_http_request_duration_seconds_count", timed)
        assert after == (before or 0) + 1, (method, rule)


def test_no_path_and_no_method_pass_the_steps_too(make_app):
    client = make_app(cors_origins=("https://ui.example",)).test_client()
    for response, status in (
        (client.get("/nowhere", headers={"Origin": "https://ui.example"}), 404),
        (client.put("/heartbeat", headers={"Origin": "https://ui.example"}), 405),
    ):
        assert response.status_code == status
        assert response.json["error"]
        assert response.headers["Access-Control-Allow-Origin"] == "https://ui.example"
    assert "POST" in client.put("/heartbeat").headers["Allow"]


@pytest.mark.parametrize("check", [ensure_operator, ensure_page_token])
def test_access_rules_are_declared_on_views_and_checked_by_the_authenticate_step(app, check):
    # Every route that needs the operator or the page token says so on its view, where the
    # step reads it; none checks by a hook of its own (test_flask_keeps_no_hook_of_its_own).
    declared = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if getattr(app.view_functions[rule.endpoint], "tassium_access", None) is check
    }
    if check is ensure_operator:
        assert {"/payouts", "/payments", "/workers/tokens", "/reports/fleet"} <= declared
    else:
        assert declared == {"/", "/metrics"}
