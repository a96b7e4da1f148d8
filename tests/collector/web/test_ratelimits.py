"""collector/web/ratelimits.py: write routes limited per client address, counted in the database
that every process and node shares."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from limits import RateLimitItemPerMinute
from limits.strategies import FixedWindowRateLimiter

from collector.store.models import Project, RateLimit
from collector.web import ratelimits
from collector.web.ratelimits import DatabaseStorage, RateLimits, client_of, rule_for
from protocol.times import utcnow
from tests.conftest import free_port, operator_client
from tests.factories import CREATOR, FakeWorker, deployment

ELSEWHERE = {"REMOTE_ADDR": "192.0.2.7"}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = utcnow()

    def __call__(self):
        return self.now


def limited_app(make_app, clock: Clock | None = None, **settings):
    app = make_app(**settings)
    if clock is not None:
        app.extensions["tassium.ratelimits"] = RateLimits(app.config["TASSIUM"], clock=clock)
    return app


def create(client, name: str, **kwargs):
    return client.post("/deployments", json=deployment(name=name), **kwargs)


# --- which routes, which clients -----------------------------------------------------------


def test_every_write_route_but_the_heartbeats_has_a_rule():
    assert rule_for("/workers/enroll", "POST") == "enrollment"
    # The enrollment challenges, whenever they are served.
    assert rule_for("/workers/enroll/challenge", "POST") == "enrollment"
    assert rule_for("/workers/enroll/challenge/<challenge_id>", "POST") == "enrollment"
    assert rule_for("/workers/enrollment", "POST") == "writes"
    for path, method in [
        ("/deployments", "POST"),
        ("/deployments/<name>", "DELETE"),
        ("/deployments/<name>/status", "PATCH"),
        ("/payments", "POST"),
        ("/payouts", "POST"),
        ("/workers/tokens", "POST"),
        ("/api/v1/deployments", "POST"),
        ("/api/v1/deployments/<name>/env", "PATCH"),
        ("/a/route/added/later", "PUT"),
    ]:
        assert rule_for(path, method) == "writes", path
    for path in ratelimits.HEARTBEATS:
        assert rule_for(path, "POST") is None, path
    assert rule_for("/deployments", "GET") is None
    assert rule_for("/deployments", "OPTIONS") is None


@pytest.mark.parametrize(
    ("address", "client"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::9", "2001:db8:1:2::/64"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_a_client_is_its_ipv4_address_or_its_ipv6_64(address, client):
    assert client_of(address) == client


def test_the_openapi_document_names_429_on_every_limited_route(client):
    document = client.get("/openapi.json").json
    paths, shared = document["paths"], document["components"]["responses"]
    # A single heartbeat is limited per wallet instead (min_interval, collector/uptime/windows.py).
    per_wallet = {("post", "/heartbeat")}
    for path, item in paths.items():
        for method, operation in item.items():
            limited = "429" in operation["responses"]
            by_address = rule_for(path, method.upper()) is not None
            assert limited == (by_address or (method, path) in per_wallet), (method, path)
            if limited:
                answer = operation["responses"]["429"]
                answer = shared[answer["$ref"].rsplit("/", 1)[1]] if "$ref" in answer else answer
                assert answer["headers"]["Retry-After"]["required"]


# --- the limits, through the routes --------------------------------------------------------


def test_a_burst_over_the_limit_is_a_429_that_writes_nothing(make_app, dbconn):
    client = operator_client(limited_app(make_app, rate_limit_writes="3/minute"))
    answers = [create(client, f"web-{i}") for i in range(6)]
    assert [a.status_code for a in answers] == [201] * 3 + [429] * 3
    for refused in answers[3:]:
        wait = int(refused.headers["Retry-After"])
        assert 1 <= wait <= 60
        assert refused.json == {
            "error": f"too many requests from 127.0.0.1 to the write routes; try again in {wait} s"
        }
    assert Project.select().count() == 3


def test_every_write_route_counts_into_the_same_limit(make_app, dbconn):
    client = operator_client(limited_app(make_app, rate_limit_writes="4/minute"))
    assert create(client, "web-1").status_code == 201
    assert client.patch("/deployments/web-1/replicas", json={"replicas": 2}).status_code == 200
    ui = {"appName": "web-2", "githubRepo": "tassium/app", "creator": CREATOR, "branch": "main"}
    assert client.post("/api/v1/deployments", json={**ui, "port": 3000}).status_code == 201
    payment = {"name": "November", "amount": "1", "creator": CREATOR}
    assert client.post("/payments", json=payment).status_code == 201
    assert client.delete("/deployments/web-1").status_code == 429
    assert client.delete("/api/v1/deployments/web-2").status_code == 429
    assert client.post("/payments", json=payment).status_code == 429
    # Reads are not limited, nor counted.
    assert [client.get("/deployments").status_code for _ in range(5)] == [200] * 5
    assert Project.select().count() == 2


def test_another_client_address_has_its_own_count(make_app, dbconn):
    client = operator_client(limited_app(make_app, rate_limit_writes="2/minute"))
    assert [create(client, f"a-{i}").status_code for i in range(3)] == [201, 201, 429]
    assert create(client, "b-1", environ_base=ELSEWHERE).status_code == 201
    # The same /64 is one client.
    v6 = [{"REMOTE_ADDR": f"2001:db8:7:7::{i}"} for i in (1, 2, 3)]
    assert [create(client, f"c-{i}", environ_base=e).status_code for i, e in enumerate(v6)] == [
        201,
        201,
        429,
    ]


def test_the_window_ends_when_retry_after_said(make_app, dbconn):
    clock = Clock()
    client = operator_client(limited_app(make_app, clock, rate_limit_writes="2/minute"))
    assert create(client, "web-1").status_code == 201
    clock.now += timedelta(seconds=10)
    assert create(client, "web-2").status_code == 201
    refused = create(client, "web-3")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "50"
    clock.now += timedelta(seconds=49.5)
    assert create(client, "web-3").headers["Retry-After"] == "1"
    clock.now += timedelta(seconds=0.5)
    # A new window, with the whole limit.
    assert [create(client, f"web-{i}").status_code for i in (3, 4, 5)] == [201, 201, 429]


def test_every_limit_of_a_rule_counts_and_the_longest_wait_is_told(make_app, dbconn):
    clock = Clock()
    client = operator_client(limited_app(make_app, clock, rate_limit_writes="2/minute; 3/hour"))
    assert [create(client, f"web-{i}").status_code for i in (1, 2)] == [201, 201]
    assert create(client, "web-3").headers["Retry-After"] == "60"
    clock.now += timedelta(minutes=1)
    # A new minute, but the hour has counted three already.
    assert create(client, "web-3").headers["Retry-After"] == str(59 * 60)
    assert Project.select().count() == 2


def test_enrollment_has_its_own_limit(make_app, dbconn):
    client = operator_client(
        limited_app(make_app, rate_limit_enrollment="3/minute", rate_limit_writes="1/minute")
    )
    # Counted before the route judges them, whatever it answers; a route of the challenges
    # counts with the others.
    answers = [
        client.post("/workers/enroll", json={}),
        client.post("/workers/enroll/challenge", json={}),
        client.post("/workers/enroll", json={}),
        client.post("/workers/enroll/challenge", json={}),
    ]
    assert [a.status_code == 429 for a in answers] == [False, False, False, True]
    assert "to the enrollment routes; try again in" in answers[3].json["error"]
    # Enrolling used none of the writes' limit.
    assert create(client, "web-1").status_code == 201
    assert sorted(r.key.split("/")[1] for r in RateLimit.select()) == ["enrollment", "writes"]


def test_the_heartbeat_routes_are_not_limited_here(make_app, dbconn):
    client = limited_app(
        make_app,
        require_signatures=False,
        rate_limit_enrollment="1/minute",
        rate_limit_writes="1/minute",
    ).test_client()
    worker = FakeWorker()
    for _ in range(3):
        beat = worker.heartbeat_body()
        answers = [
            client.post("/heartbeat", json=beat),
            client.post("/heartbeat/ping", json=worker.ping_body()),
            client.post("/heartbeats", json={"heartbeats": [{"body": "{}"}]}),
            client.post("/api/v1/heartbeat", json=worker.heartbeat_body()),
            client.post("/api/v1/heartbeat/ping", json=worker.ping_body()),
        ]
        # (A heartbeat may be a 429 of its own: one per wallet per min_interval.)
        refusals = [a.json.get("error", "") for a in answers if a.status_code == 429]
        assert not [r for r in refusals if r.startswith("too many requests from")]
    assert RateLimit.select().count() == 0


def test_a_rule_set_to_0_is_off(make_app, dbconn):
    client = operator_client(limited_app(make_app, rate_limit_writes="0", rate_limit_enrollment=""))
    assert {create(client, f"web-{i}").status_code for i in range(5)} == {201}
    assert 429 not in {client.post("/workers/enroll", json={}).status_code for _ in range(3)}
    assert RateLimit.select().count() == 0


def test_a_database_that_cannot_count_is_the_route_s_503_not_a_500(make_app, backend, tmp_path):
    down = {
        "sqlite": f"sqlite:///{tmp_path / 'gone' / 'c.db'}",
        "postgres": f"postgresql://tassium@127.0.0.1:{free_port()}/gone",
    }[backend]
    client = operator_client(limited_app(make_app, database_url=down, rate_limit_writes="1/minute"))
    for _ in range(2):
        response = create(client, "web-1")
        assert response.status_code == 503
        assert response.json["error"] == "database unavailable"


# --- the storage ---------------------------------------------------------------------------


def test_the_storage_keeps_to_the_limits_api(app, dbconn):
    clock = Clock()
    limiter = FixedWindowRateLimiter(DatabaseStorage(clock))
    item = RateLimitItemPerMinute(2)
    assert limiter.hit(item, "k") and limiter.hit(item, "k")
    assert not limiter.test(item, "k")
    assert not limiter.hit(item, "k")
    stats = limiter.get_window_stats(item, "k")
    assert stats.remaining == 0
    assert stats.reset_time == pytest.approx((clock.now + timedelta(minutes=1)).timestamp())
    assert limiter.hit(item, "other")
    limiter.clear(item, "k")
    assert limiter.get_window_stats(item, "k").remaining == 2
    assert limiter.storage.check()
    assert limiter.storage.reset() == 1


def test_prune_deletes_the_windows_that_are_over(app, dbconn):
    clock = Clock()
    limiter = FixedWindowRateLimiter(DatabaseStorage(clock))
    limiter.hit(RateLimitItemPerMinute(5), "short")
    limiter.hit(RateLimitItemPerMinute(5, 10), "long")
    later = clock.now + timedelta(minutes=1)
    assert ratelimits.prune(later) == 1
    assert ratelimits.prune(later) == 0
    assert [r.key for r in RateLimit.select()] == [RateLimitItemPerMinute(5, 10).key_for("long")]


# --- served: every process of every node counts into one limit ----------------------------


@pytest.mark.slow
def test_the_limit_is_shared_by_every_process_of_every_node(serve_collector, dbconn):
    settings = {"processes": 2, "rate_limit_writes": "7/minute"}
    nodes = [serve_collector(**settings), serve_collector(**settings)]

    def send(i: int) -> httpx.Response:
        # A connection each, so that every process takes some.
        url = nodes[i % 2].url + "/deployments"
        return httpx.post(
            url, json=deployment(name=f"web-{i}"), headers=nodes[0].operator, timeout=30
        )

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(20)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 7 + [429] * 13
    assert all(int(a.headers["Retry-After"]) >= 1 for a in answers if a.status_code == 429)
    assert Project.select().count() == 7
