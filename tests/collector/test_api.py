"""What every route shares: the bearer API token, body limits, CORS, JSON errors."""

import pytest

from tests.collector.conftest import rows
from tests.factories import CREATOR, deployment

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
