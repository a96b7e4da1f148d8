"""What every route shares: the bearer API token, body limits, CORS, JSON errors."""

import httpx
import pytest

from tests.collector.conftest import rows
from tests.factories import CREATOR, FakeWorker, deployment
from tests.polling import wait_for

TOKEN = "t" * 32


@pytest.fixture
def guarded(make_app, dbconn):
    return make_app(api_token=TOKEN).test_client()


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-wrong-token", f"Basic {TOKEN}"])
@pytest.mark.parametrize(
    "method, path, body",
    [
        ("post", "/deployments", deployment()),
        ("patch", "/deployments/web-1/status", {"status": "processing"}),
        ("delete", "/deployments/web-1", None),
        ("post", "/payments", {"name": "x", "amount": "1", "creator": CREATOR}),
    ],
)
def test_mutating_routes_need_the_api_token(guarded, dbconn, method, path, body, header):
    guarded.post("/deployments", json=deployment(), headers={"Authorization": f"Bearer {TOKEN}"})
    before = rows(dbconn)
    headers = {"Authorization": header} if header else {}
    response = getattr(guarded, method)(path, json=body, headers=headers)
    assert response.status_code == 401
    assert rows(dbconn) == before
    assert guarded.get("/deployments").status_code == 200  # reading needs no token


@pytest.mark.usefixtures("unchanged")
def test_an_oversized_body_is_refused(make_app, dbconn):
    client = make_app(max_body_bytes=1024).test_client()
    response = client.post("/deployments", json=deployment(url="https://x/" + "a" * 2000))
    assert response.status_code == 413
    assert "larger than 1024 bytes" in response.json["error"]


def test_cors_answers_only_configured_origins(make_app, dbconn):
    client = make_app(cors_origins=("https://ui.example",)).test_client()
    allowed = client.options(
        "/deployments",
        headers={"Origin": "https://ui.example", "Access-Control-Request-Method": "POST"},
    )
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ui.example"
    assert "Authorization" in allowed.headers["Access-Control-Allow-Headers"]
    other = client.get("/deployments", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_unknown_routes_and_methods_answer_json(client):
    assert client.get("/nope").json["error"]
    assert client.put("/deployments").status_code == 405


# --- a database that cannot answer ----------------------------------------------------------


def test_a_database_that_cannot_be_opened_is_a_503(make_app, tmp_path):
    # SQLite's "unable to open database file": the directory is gone.
    client = make_app(database_url=f"sqlite:///{tmp_path / 'gone' / 'c.db'}").test_client()
    for response in (client.get("/deployments"), client.get("/healthz")):
        assert response.status_code == 503
        assert response.json["error"] == "database unavailable"
        assert response.headers["Retry-After"] == "10"


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_a_postgres_outage_is_a_503_logged_once_then_recovers(own_postgres, serve_collector):
    # Heartbeats a moment apart, so no min_interval.
    collector = serve_collector(
        database_url=own_postgres.fresh_database(), processes=1, min_interval=0
    )
    worker = FakeWorker()
    assert worker.enroll_at(collector.url).status_code == 201
    with httpx.Client(base_url=collector.url, timeout=10) as http:
        assert post_beat(http, worker).status_code == 200

        own_postgres.pause()
        answers = [
            http.get("/deployments"),
            http.get(f"/workers/{worker.wallet}"),
            post_beat(http, worker),
            http.get("/healthz"),
            http.get("/deployments"),
        ]
        for response in answers:
            assert response.status_code == 503
            assert response.json()["error"] == "database unavailable"
            assert int(response.headers["Retry-After"]) > 0

        own_postgres.resume()
        wait_for(lambda: http.get("/healthz").status_code == 200, "the collector to recover")
        assert [post_beat(http, worker).status_code for _ in range(3)] == [200, 200, 200]

    log = collector.log.read_text()
    assert log.count("database unavailable") == 1, log
    assert log.count("database available again") == 1, log
    assert "Traceback" not in log


def post_beat(http: httpx.Client, worker: FakeWorker) -> httpx.Response:
    raw, headers = worker.signed(worker.heartbeat_body())
    return http.post("/heartbeat", content=raw, headers=headers)
