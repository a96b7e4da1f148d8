"""Deployments driven by the original Tassium deployer service: a build runs off the request
and its answer moves the status on; env vars and removals wait for the deployer's word. A
stand-in deployer succeeds, refuses, hangs or is down; on SQLite and PostgreSQL. Every call
to it is signed (the stand-in refuses any other), only repositories the operator allows are
sent, and env var values never come back out."""

import json
import logging
import time
from datetime import timedelta

import httpx
import pytest

from collector.projects import deployments
from collector.projects.deployer import redact, repository_allowed
from collector.store.db import database
from collector.store.models import Project
from collector.uptime.sweeper import SweeperThread, sweep_pass
from protocol.times import utcnow
from tests.agent.fake_collector import Reply
from tests.collector.fake_deployer import (
    DEPLOYER_SECRET,
    MAX_AGE,
    FakeDeployer,
    Gate,
    builds,
    deployer_json,
    down,
    hangs,
    refuses,
    signature_headers,
)
from tests.conftest import operator_client
from tests.factories import connected, deployment
from tests.polling import wait_for

DEPLOY = "POST /api/v1/deploy/new"
SECRET = "s3cret-value-that-must-not-be-stored"


@pytest.fixture
def deployer():
    with FakeDeployer() as fake:
        yield fake


# What the collectors of these tests let their deployer build (tests.factories' repositories).
ALLOWED = ("github.com/tassium",)


@pytest.fixture
def served_by(make_app):
    """``served_by(url, **settings)``: an operator's test client of an app whose deployer is at
    ``url``, sharing the stand-in's secret and building the repositories of ``ALLOWED``."""

    def make(url: str, **settings):
        settings = {"deployer_timeout": 1, "deployer_build_timeout": 30,
                    "deployer_secret": DEPLOYER_SECRET, "deployer_repositories": ALLOWED,
                    **settings}  # fmt: skip
        return operator_client(make_app(deployer_url=url, **settings))

    return make


def stored(name: str, **fields) -> Project:
    """A deployment written straight to the table, in whatever state a test needs."""
    values = {"url": "https://x.example", "github": "https://github.com/a/b",
              "creator": "0x" + "1" * 40, **fields}  # fmt: skip
    return Project.create(name=name, **values)


def settled(client, name: str) -> dict:
    """The deployment once its build has been answered (no longer processing)."""
    return wait_for(
        lambda: (d := client.get(f"/deployments/{name}").json)["status"] != "processing" and d,
        f"deployment {name} still processing",
    )


def test_a_build_runs_off_the_request_and_its_success_sets_the_url(served_by, deployer):
    build = deployer.answers[DEPLOY] = Gate(builds("https://shop.apps.example"))
    client = served_by(deployer.url)
    body = deployment(name="shop", github="tassium/shop", branch="dev", port=8080,
                      envVars={"API_KEY": SECRET})  # fmt: skip
    created = client.post("/deployments", json=body)
    assert created.status_code == 201 and created.json["status"] == "processing"
    wait_for(build.reached.is_set, "the build reaching the deployer")
    # The deployer is still building: nothing waits for it, and nothing pretends it is done.
    assert client.get("/deployments/shop").json["status"] == "processing"

    build.open()
    done = settled(client, "shop")
    assert done["status"] == "success" and done["url"] == "https://shop.apps.example"
    assert done["errorMessage"] is None
    assert deployer.received("POST", "/api/v1/deploy/new") == [
        {"app_name": "shop", "github_repo": "tassium/shop", "branch": "dev", "port": 8080,
         "env_vars": {"API_KEY": SECRET}}
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (refuses(422, "Build failed: no Dockerfile"), "Build failed: no Dockerfile"),
        (refuses(409, "App 'shop' already exists"), "App 'shop' already exists"),
        (Reply(500, "text/html", b"<h1>oops</h1>"), "answered HTTP 500"),
        # Something else at its address (a proxy's welcome page): no build happened.
        (Reply(200, "text/html", b"<h1>Welcome</h1>"), "HTTP 200 without status success"),
        (deployer_json(message="queued"), "HTTP 200 without status success"),
    ],
)
def test_a_refused_build_fails_with_the_deployers_words(served_by, deployer, answer, message):
    deployer.answers[DEPLOY] = answer
    client = served_by(deployer.url)
    assert client.post("/deployments", json=deployment(name="shop")).status_code == 201
    done = settled(client, "shop")
    assert done["status"] == "failed" and message in done["errorMessage"]
    assert done["url"] == "https://shop.tassium.app"  # the template's, never the deployer's


@pytest.mark.slow  # waits out a deployer time-out
def test_a_hanging_deployer_fails_the_build_at_its_time_out(served_by, deployer):
    deployer.answers[DEPLOY] = hangs()
    client = served_by(deployer.url, deployer_build_timeout=1)
    assert client.post("/deployments", json=deployment(name="shop")).json["status"] == "processing"
    done = settled(client, "shop")
    assert done["status"] == "failed" and "did not answer within 1 s" in done["errorMessage"]


def test_a_deployer_that_is_down_fails_the_build(served_by):
    client = served_by(down())
    client.post("/deployments", json=deployment(name="shop"))
    done = settled(client, "shop")
    assert done["status"] == "failed" and "unreachable" in done["errorMessage"]


def every_stored_text() -> str:
    """Every value in every table, as text (PostgreSQL hands bytes back as memoryviews)."""
    texts = []
    for table in database.get_tables():
        for row in database.execute_sql(f'SELECT * FROM "{table}"').fetchall():  # noqa: S608
            texts += [bytes(v).decode("latin-1") if isinstance(v, bytes | memoryview) else str(v)
                      for v in row]  # fmt: skip
    return "\n".join(texts)


def test_env_var_values_reach_the_deployer_and_are_stored_nowhere(served_by, deployer):
    deployer.answers[DEPLOY] = builds()
    deployer.answers["PATCH /api/v1/apps/shop/env"] = builds()
    client = served_by(deployer.url)
    client.post("/deployments", json=deployment(name="shop", envVars={"TOKEN": SECRET}))
    settled(client, "shop")
    changed = client.patch("/deployments/shop/env", json={"envVars": {"TOKEN": SECRET + "2"}})
    assert changed.status_code == 200
    assert deployer.received("PATCH", "/api/v1/apps/shop/env") == [
        {"env_vars": {"TOKEN": SECRET + "2"}, "port": None}
    ]
    with database.connection_context():
        dump = every_stored_text()
    assert "https://github.com/tassium/app" in dump  # the dump does hold the deployment
    assert SECRET not in dump


def test_a_failed_builds_message_is_stored_without_the_env_values_it_echoes(served_by, deployer):
    deployer.answers[DEPLOY] = refuses(422, f"Build failed: TOKEN={SECRET} was refused; PORT=80")
    client = served_by(deployer.url)
    client.post("/deployments", json=deployment(name="shop", envVars={"TOKEN": SECRET, "P": "80"}))
    done = settled(client, "shop")
    # However short: a 2-character value may be a secret (a PIN) as much as a port.
    assert done["errorMessage"] == "Build failed: TOKEN=[redacted] was refused; PORT=[redacted]"
    with database.connection_context():
        assert SECRET not in every_stored_text()


def test_new_env_vars_and_port_are_applied_once_the_deployer_took_them(served_by, deployer):
    deployer.answers["PATCH /api/v1/apps/web-1/env"] = builds()
    client = served_by(deployer.url)
    stored("web-1", status="success")
    changed = client.patch("/deployments/web-1/env", json={"envVars": {"A": "1"}, "port": 8080})
    assert changed.status_code == 200 and changed.json["port"] == 8080


# A hang waits out the 1 s time-out: slow; the others answer at once.
@pytest.mark.parametrize(
    "trouble", ["refuses", pytest.param("hangs", marks=pytest.mark.slow), "down"]
)
def test_env_vars_the_deployer_does_not_take_are_a_502_and_change_nothing(
    served_by, deployer, trouble
):
    deployer.answers["PATCH /api/v1/apps/web-1/env"] = (
        refuses(500, "service update failed") if trouble == "refuses" else hangs()
    )
    client = served_by(down() if trouble == "down" else deployer.url)
    stored("web-1", status="success", port=3000)
    before = client.get("/deployments/web-1").json
    answer = client.patch("/deployments/web-1/env", json={"envVars": {"A": "1"}, "port": 8080})
    assert answer.status_code == 502
    assert {"refuses": "service update failed", "hangs": "within 1 s", "down": "unreachable"}[
        trouble
    ] in answer.json["error"]
    assert client.get("/deployments/web-1").json == before


@pytest.mark.parametrize(
    ("trouble", "status", "kept"),
    [
        ("removes", 204, False),
        ("never had it", 204, False),  # its 404: never deployed, or already removed
        ("refuses", 502, True),
        ("down", 502, True),
        pytest.param("hangs", 502, True, marks=pytest.mark.slow),
    ],
)
def test_a_deployment_is_deleted_only_once_the_deployer_removed_it(
    served_by, deployer, trouble, status, kept
):
    deployer.answers["DELETE /api/v1/apps/web-1"] = {
        "removes": builds(),
        "never had it": refuses(404, "App not found"),
        "refuses": refuses(500, "docker stack rm failed"),
    }.get(trouble) or hangs()
    client = served_by(down() if trouble == "down" else deployer.url)
    stored("web-1")
    answer = client.delete("/deployments/web-1")
    assert answer.status_code == status
    if kept:
        assert "did not remove 'web-1'" in answer.json["error"]
    assert (client.get("/deployments/web-1").status_code == 200) is kept
    if trouble != "down":
        assert len(deployer.received("DELETE", "/api/v1/apps/web-1")) == 1


def test_a_deployment_deleted_while_it_builds_is_removed_from_the_deployer_once_built(
    served_by, deployer
):
    build = deployer.answers[DEPLOY] = Gate(builds())
    client = served_by(deployer.url)
    client.post("/deployments", json=deployment(name="shop"))
    wait_for(build.reached.is_set, "the build reaching the deployer")
    # The deployer has no app yet (its 404), so the row goes; the build then finishes.
    assert client.delete("/deployments/shop").status_code == 204
    build.open()
    wait_for(
        lambda: len(deployer.received("DELETE", "/api/v1/apps/shop")) == 2,
        "the built app being removed, since nothing accounts for it any more",
    )
    assert client.get("/deployments/shop").status_code == 404


def test_an_old_builds_answer_never_reaches_a_new_deployment_of_the_same_name(served_by, deployer):
    first = deployer.answers[DEPLOY] = Gate(builds("https://old.example"))
    client = served_by(deployer.url)
    client.post("/deployments", json=deployment(name="shop"))
    wait_for(first.reached.is_set, "the first build reaching the deployer")
    assert client.delete("/deployments/shop").status_code == 204
    # A new deployment takes the name; its own build is still running when the old answers.
    second = deployer.answers[DEPLOY] = Gate(builds("https://new.example"))
    client.post("/deployments", json=deployment(name="shop"))
    wait_for(second.reached.is_set, "the second build reaching the deployer")
    first.open()
    time.sleep(0.5)  # room for the old answer to arrive and, wrongly applied, to show
    assert client.get("/deployments/shop").json["status"] == "processing"
    # The app is the new deployment's now: the old build's end does not remove it.
    assert len(deployer.received("DELETE", "/api/v1/apps/shop")) == 1
    second.open()
    assert settled(client, "shop")["url"] == "https://new.example"


def test_replicas_are_1_to_10_and_never_reach_the_deployer(served_by, deployer):
    client = served_by(deployer.url)
    stored("web-1", status="success")
    for replicas in (1, 10):
        scaled = client.patch("/deployments/web-1/replicas", json={"replicas": replicas})
        assert scaled.status_code == 200 and scaled.json["replicas"] == replicas
    for replicas in (0, 11, -1, "3", 2.5, None, True):
        refused = client.patch("/deployments/web-1/replicas", json={"replicas": replicas})
        assert refused.status_code == 400, replicas
        assert "replicas" in refused.json["error"]
    assert client.patch("/deployments/web-1/replicas", json={}).status_code == 400
    unknown = client.patch("/deployments/nope/replicas", json={"replicas": 2})
    assert unknown.status_code == 404
    assert client.get("/deployments/web-1").json["replicas"] == 10
    assert deployer.requests == []  # the original deployer protocol has no scaling call


def test_without_a_deployer_env_vars_are_refused_and_the_status_moves_by_hand(operator):
    client = operator
    assert client.post("/deployments", json=deployment(envVars={"A": "1"})).status_code == 422
    assert client.get("/deployments/web-1").status_code == 404  # nothing was created
    # No deployer, nothing sent: any repository may be recorded.
    created = client.post("/deployments", json=deployment(github="anyone/anything"))
    assert created.json["status"] == "pending"
    assert client.patch("/deployments/web-1/env", json={"envVars": {}}).status_code == 422
    moved = client.patch("/deployments/web-1/status", json={"status": "processing"})
    assert moved.json["status"] == "processing"


def test_the_sweeper_fails_builds_the_collector_lost_track_of(app, dbconn):
    now = utcnow()
    timeout = timedelta(minutes=15)
    old = now - timeout - deployments.LOST_BUILD_MARGIN - timedelta(seconds=1)
    for name, status, updated in [
        ("lost", "processing", old),
        ("building", "processing", now - timeout),
        ("done", "success", old),
    ]:
        stored(name, status=status, updated_at=updated)
    swept = sweep_pass(gap=timedelta(minutes=30), retention=timedelta(days=30), now=now,
                       build_timeout=timeout)  # fmt: skip
    assert swept.failed == 1
    statuses = {p.name: (p.status, p.error_message) for p in Project.select()}
    assert statuses["lost"] == ("failed", deployments.LOST_BUILD)
    assert statuses["building"] == ("processing", None)
    assert statuses["done"] == ("success", None)
    # Without a deployer nothing is failed: an operator moves those statuses by hand.
    assert sweep_pass(gap=timedelta(minutes=30), retention=timedelta(days=30), now=now).failed == 0


def test_the_sweep_command_fails_lost_builds_when_a_deployer_is_configured(runner, database_url):
    with connected(database_url):
        stored("lost", status="processing", updated_at=utcnow() - timedelta(minutes=3))
    # 3 minutes is past 60 s + the margin: lost. Without a deployer, nobody builds: kept.
    assert "failed" not in runner("sweep").stdout
    result = runner("sweep", deployer_url=down(), deployer_secret=DEPLOYER_SECRET,
                    deployer_build_timeout=60)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "failed 1 deployments whose build the collector lost track of" in result.stdout
    with connected(database_url):
        lost = Project.get(Project.name == "lost")
    assert (lost.status, lost.error_message) == ("failed", deployments.LOST_BUILD)


def test_the_serving_processes_sweeper_fails_lost_builds(dbconn):
    now = utcnow()
    stored("lost", status="processing", updated_at=now - timedelta(hours=1))
    thread = SweeperThread(gap=timedelta(minutes=30), retention=timedelta(days=30),
                           interval=timedelta(milliseconds=20), clock=lambda: now,
                           build_timeout=timedelta(minutes=15))  # fmt: skip
    thread.start()
    try:
        wait_for(
            lambda: Project.get(Project.name == "lost").status == "failed",
            "the sweeper thread failing the lost build",
        )
    finally:
        thread.stop()
        thread.join(timeout=30)


# --- the link: signed calls, allowed repositories, env values that never come back -----------

ENV = "PATCH /api/v1/apps/shop/env"


@pytest.mark.parametrize("prefix", ["", "/tassium/v2"])
def test_the_collectors_calls_are_signed_and_the_deployer_takes_them(served_by, prefix):
    # Behind a path prefix too: the signature covers the path the deployer sees.
    calls = [("POST", "/api/v1/deploy/new"), ("PATCH", "/api/v1/apps/shop/env"),
             ("DELETE", "/api/v1/apps/shop")]  # fmt: skip
    with FakeDeployer({f"{m} {prefix}{p}": builds() for m, p in calls}) as deployer:
        client = served_by(deployer.url + prefix)
        client.post("/deployments", json=deployment(name="shop", envVars={"TOKEN": SECRET}))
        assert settled(client, "shop")["status"] == "success"
        changed = client.patch("/deployments/shop/env", json={"envVars": {"TOKEN": "new"}})
        assert changed.status_code == 200
        assert client.delete("/deployments/shop").status_code == 204
    assert deployer.refused == []
    assert [(r.method, r.path) for r in deployer.requests] == [(m, prefix + p) for m, p in calls]
    assert deployer.requests[2].body == b""  # what the DELETE's signature covered


def test_the_deployer_refuses_calls_not_signed_with_the_secret(deployer):
    """The stand-in's own check, as an operator's deployer would make it."""
    deployer.answers[DEPLOY] = builds()
    path = "/api/v1/deploy/new"
    body = json.dumps({"app_name": "shop", "github_repo": "evil/x"}).encode()
    now = int(time.time())
    calls = {
        "unsigned": {},
        "another secret": signature_headers("x" * 40, "POST", path, body),
        "stale": signature_headers(DEPLOYER_SECRET, "POST", path, body, now - MAX_AGE - 5),
        "another body": signature_headers(DEPLOYER_SECRET, "POST", path, b"{}"),
        "another path": signature_headers(DEPLOYER_SECRET, "POST", "/api/v1/apps/x/env", body),
    }
    for why, headers in calls.items():
        answer = httpx.post(deployer.url + path, content=body, headers=headers)
        assert answer.status_code == 401, why
    assert [problem for problem, _ in deployer.refused] == [
        "unsigned", "wrong signature", "stale", "wrong signature", "wrong signature"
    ]  # fmt: skip
    assert deployer.received("POST", path) == []
    signed = signature_headers(DEPLOYER_SECRET, "POST", path, body)
    assert httpx.post(deployer.url + path, content=body, headers=signed).status_code == 200
    assert deployer.received("POST", path) == [json.loads(body)]


def test_a_collector_with_another_secret_builds_nothing(served_by, deployer):
    deployer.answers[DEPLOY] = builds()
    client = served_by(deployer.url, deployer_secret="another-secret-" + "x" * 32)
    client.post("/deployments", json=deployment(name="shop"))
    done = settled(client, "shop")
    assert done["status"] == "failed" and "signature" in done["errorMessage"]
    assert [problem for problem, _ in deployer.refused] == ["wrong signature"]
    assert deployer.received("POST", "/api/v1/deploy/new") == []


def strings(document: object) -> list[str]:
    """Every key and string value in a JSON document."""
    if isinstance(document, dict):
        return [*document, *(s for v in document.values() for s in strings(v))]
    if isinstance(document, list):
        return [s for v in document for s in strings(v)]
    return [document] if isinstance(document, str) else []


def test_short_env_values_the_deployer_echoes_never_come_back(served_by, deployer, caplog):
    caplog.set_level(logging.DEBUG)
    # Characters found nowhere else in these answers and logs: none is a base64 or hex digit,
    # which random keys and ids in the logs are made of.
    one, three = "~", "^~^"
    deployer.answers[DEPLOY] = refuses(422, f"Build failed: PIN={three} and FLAG={one} rejected")
    deployer.answers[ENV] = refuses(500, f"restart failed: PIN={three} FLAG={one}")
    client = served_by(deployer.url)
    env = {"PIN": three, "FLAG": one}
    client.post("/deployments", json=deployment(name="shop", envVars=env))
    done = settled(client, "shop")
    assert done["errorMessage"] == "Build failed: PIN=[redacted] and FLAG=[redacted] rejected"
    # The deployer had them (and so echoed them, as scripted).
    assert deployer.received("POST", "/api/v1/deploy/new")[0]["env_vars"] == env

    anonymous = client.application.test_client()
    answers = [
        anonymous.get("/deployments"),
        anonymous.get("/deployments/shop"),
        anonymous.get(f"/api/v1/deployments?creator={done['creator']}"),
        anonymous.get("/api/v1/deployments/shop"),
        client.patch("/deployments/shop/env", json={"envVars": env}),
        client.patch("/api/v1/deployments/shop/env", json={"envVars": env}),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 502, 502]
    assert answers[4].json["error"].endswith("restart failed: PIN=[redacted] FLAG=[redacted]")
    for answer in answers:
        shown = strings(answer.json)
        assert "[redacted]" in "".join(shown), answer.request.path  # the message is there
        assert not [s for s in shown if one in s or three in s], answer.request.path
    assert caplog.records  # the deployer's calls were logged, without the values
    assert one not in caplog.text and three not in caplog.text


def test_a_long_message_is_cut_only_once_its_values_are_gone(served_by, deployer):
    deployer.answers[DEPLOY] = refuses(422, "x" * 1995 + SECRET)
    client = served_by(deployer.url)
    client.post("/deployments", json=deployment(name="shop", envVars={"TOKEN": SECRET}))
    message = settled(client, "shop")["errorMessage"]
    assert message.startswith("x" * 1995 + "[red") and SECRET[:4] not in message


@pytest.mark.parametrize(
    ("text", "values", "shown"),
    [
        # One pass: the replacement is never searched for the next value.
        ("a e", ["a", "e"], "[redacted] [redacted]"),
        ("token-long and token", ["token", "token-long"], "[redacted] and [redacted]"),
        # As JSON writes them, when the deployer echoes the body it was sent.
        ('env {"T": "x\\"y\\u00e9"}', ['x"yé'], 'env {"T": "[redacted]"}'),
        ("nothing to hide", ["", "zz"], "nothing to hide"),
    ],
)
def test_redact(text, values, shown):
    assert redact(text, values) == shown


@pytest.mark.parametrize(
    ("scopes", "github", "allowed"),
    [
        (("github.com/acme",), "https://github.com/acme/app", True),
        (("github.com/acme",), "https://github.com/ACME/App", True),
        (("GitHub.com/Acme",), "https://github.com/acme/app", True),
        (("github.com/acme",), "https://github.com/acme-evil/app", False),
        (("github.com/acme",), "https://github.com/evil/acme", False),
        (("github.com",), "https://github.com/anyone/anything", True),
        (("gitlab.com", "github.com/acme"), "https://github.com/evil/x", False),
        (("github.com/acme/app",), "https://github.com/acme/app", True),
        (("github.com/acme/app.git",), "https://github.com/Acme/app", True),
        (("github.com/acme/app",), "https://github.com/acme/app2", False),
        ((), "https://github.com/acme/app", False),
    ],
)
def test_repository_allowed(scopes, github, allowed):
    assert repository_allowed(github, scopes) is allowed


@pytest.mark.parametrize(
    ("scopes", "path"),
    [(("github.com/acme",), "/deployments"), ((), "/deployments"),
     (("github.com/acme",), "/api/v1/deployments")],
)  # fmt: skip
def test_a_repository_the_operator_does_not_allow_is_refused_stored_nowhere_sent_nowhere(
    served_by, deployer, scopes, path
):
    deployer.answers[DEPLOY] = builds()
    client = served_by(deployer.url, deployer_repositories=scopes)
    refused = client.post(path, json=deployment(name="shop", github="evil/x"))
    assert refused.status_code == 400
    error = refused.json["error"]
    assert error.startswith("github: ") and "deployer_repositories" in error
    assert "github.com/evil/x is not among them" in error
    assert ("under github.com/acme" in error) is bool(scopes)
    assert client.get("/deployments/shop").status_code == 404
    time.sleep(0.2)  # room for a build wrongly started to reach the deployer
    assert deployer.requests == []


@pytest.mark.parametrize(
    ("scopes", "github"),
    [(("github.com/acme",), "ACME/app"), (("github.com/acme",), "acme/other"),
     (("github.com",), "anyone/anything"), (("github.com/acme/app",), "acme/app")],
)  # fmt: skip
def test_owner_host_and_repository_entries_allow_what_they_cover(
    served_by, deployer, scopes, github
):
    deployer.answers[DEPLOY] = builds()
    client = served_by(deployer.url, deployer_repositories=scopes)
    assert (
        client.post("/deployments", json=deployment(name="shop", github=github)).status_code == 201
    )
    assert settled(client, "shop")["status"] == "success"
    assert [b["github_repo"] for b in deployer.received("POST", "/api/v1/deploy/new")] == [github]


def test_a_stored_deployment_whose_repository_is_no_longer_allowed_is_not_sent(served_by, deployer):
    """Stored when the list covered it; the operator narrowed the list since."""
    deployer.answers[DEPLOY] = builds()
    client = served_by(deployer.url, deployer_repositories=("github.com/acme",))
    project = stored("old", github="https://github.com/evil/x", status="processing")
    deployments.build(client.application.extensions["tassium.deployer"], project, {"A": "1"})
    done = client.get("/deployments/old").json
    assert done["status"] == "failed"
    assert done["errorMessage"].startswith("not sent to the deployer: github.com/evil/x")
    assert "deployer_repositories" in done["errorMessage"]
    assert deployer.requests == []
