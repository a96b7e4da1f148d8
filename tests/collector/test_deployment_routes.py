"""Deployments, payments and the rules every route shares: validation, conflicts, the API
token, body limits, CORS; and that a rejected request writes nothing."""

import pytest

from collector.models import Payment, Project
from tests.factories import new_wallet

CREATOR = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # a valid EIP-55 address
TOKEN = "t" * 32


def deployment(**fields) -> dict:
    return {"name": "web-1", "github": "tassium/app", "creator": CREATOR, **fields}


def rows(dbconn) -> tuple:
    return (
        sorted((p.name, p.status, p.url) for p in Project.select()),
        sorted((p.name, p.amount) for p in Payment.select()),
    )


@pytest.fixture
def unchanged(dbconn, client):
    """Seed one deployment, then assert after the test that nothing changed."""
    assert client.post("/deployments", json=deployment(name="seed")).status_code == 201
    before = rows(dbconn)
    yield
    assert rows(dbconn) == before


def test_it_creates_a_pending_deployment_with_every_field(client):
    response = client.post("/deployments", json=deployment(port=8080, replicas=3))
    assert response.status_code == 201
    body = response.json
    assert {k: body[k] for k in ("name", "status", "port", "replicas", "creator", "github")} == {
        "name": "web-1",
        "status": "pending",
        "port": 8080,
        "replicas": 3,
        "creator": CREATOR.lower(),
        "github": "https://github.com/tassium/app",
    }
    assert body["url"] == "https://web-1.tassium.app"
    assert body["createdAt"].endswith("Z")
    assert client.get("/deployments/web-1").json == body


def test_it_accepts_the_web_uis_field_names(client):
    ui = {"appName": "ui-app", "githubRepo": "https://github.com/a/b.git", "creator": CREATOR}
    response = client.post("/deployments", json=ui)
    assert response.status_code == 201
    assert (response.json["name"], response.json["github"]) == ("ui-app", "https://github.com/a/b")
    assert response.json["port"] == 3000 and response.json["replicas"] == 1


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "body, message",
    [
        (deployment(name="Web"), "lower-case"),
        (deployment(name="a" * 21), "1 to 20"),
        (deployment(name="-web"), "starting and ending"),
        (deployment(name=5), "name must be"),
        (deployment(github="not a repo"), "GitHub repository"),
        (deployment(creator="0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed"), "checksum"),
        (deployment(port=0), "port must be from 1 to 65535"),
        (deployment(port=65536), "port must be from 1 to 65535"),
        (deployment(port="80"), "port must be a whole number"),
        (deployment(port=True), "port must be a whole number"),
        (deployment(replicas=0), "replicas"),
        (deployment(url="ftp://x"), "url must be"),
        (deployment(colour="red"), "unknown field 'colour'"),
        (deployment(appName="other"), "name the same field"),
        ({"github": "a/b", "creator": CREATOR}, "name is required"),
    ],
)
def test_an_invalid_deployment_is_a_bad_request(client, body, message):
    response = client.post("/deployments", json=body)
    assert response.status_code == 400
    assert message in response.json["error"]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "raw", [b"{", b"[1]", b"", b"[" * 100_000], ids=["json", "array", "empty", "deep"]
)
def test_a_body_that_is_not_a_json_object_is_a_bad_request(client, raw):
    response = client.post("/deployments", data=raw, content_type="application/json")
    assert response.status_code == 400


@pytest.mark.usefixtures("unchanged")
def test_a_duplicate_name_is_a_conflict(client):
    response = client.post("/deployments", json=deployment(name="seed", github="x/y"))
    assert response.status_code == 409
    assert "already exists" in response.json["error"]


@pytest.mark.parametrize("final", ["success", "failed"])
def test_status_moves_pending_processing_then_final(client, final):
    client.post("/deployments", json=deployment())
    for status in ("processing", final):
        response = client.patch("/deployments/web-1/status", json={"status": status})
        assert (response.status_code, response.json["status"]) == (200, status)


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "path, status, code, message",
    [
        ("seed", "success", 409, "allowed: processing"),
        ("seed", "pending", 409, "allowed: processing"),
        ("seed", "done", 400, "status must be one of"),
        ("nope", "processing", 404, "no deployment"),
    ],
)
def test_a_forbidden_transition_is_refused(client, path, status, code, message):
    response = client.patch(f"/deployments/{path}/status", json={"status": status})
    assert response.status_code == code
    assert message in response.json["error"]


def test_a_final_status_allows_nothing(client, dbconn):
    client.post("/deployments", json=deployment())
    client.patch("/deployments/web-1/status", json={"status": "processing"})
    client.patch("/deployments/web-1/status", json={"status": "failed"})
    response = client.patch("/deployments/web-1/status", json={"status": "processing"})
    assert response.status_code == 409 and "failed is final" in response.json["error"]
    assert Project.get(Project.name == "web-1").status == "failed"


def test_the_list_filters_and_pages(client):
    other = new_wallet()
    for i in range(5):
        client.post("/deployments", json=deployment(name=f"app-{i}"))
    client.post("/deployments", json=deployment(name="theirs", creator=other))
    client.patch("/deployments/app-0/status", json={"status": "processing"})

    mine = client.get(f"/deployments?creator={CREATOR}&limit=2&offset=1").json
    assert (mine["total"], len(mine["items"]), mine["limit"], mine["offset"]) == (5, 2, 2, 1)
    assert all(d["creator"] == CREATOR.lower() for d in mine["items"])
    processing = client.get("/deployments?status=processing").json
    assert [d["name"] for d in processing["items"]] == ["app-0"]
    assert client.get("/deployments?limit=0").status_code == 400
    assert client.get("/deployments?status=nope").status_code == 400
    assert client.get("/deployments?creator=0x1").status_code == 400


def test_delete_removes_the_deployment(client):
    client.post("/deployments", json=deployment())
    assert client.delete("/deployments/web-1").status_code == 204
    assert client.get("/deployments/web-1").status_code == 404
    assert client.delete("/deployments/web-1").status_code == 404


# --- payments -------------------------------------------------------------------------------


def test_it_records_a_uint256_payment(client):
    amount = str(2**256 - 1)
    response = client.post("/payments", json={"name": "Nov", "amount": amount, "creator": CREATOR})
    assert response.status_code == 201
    assert response.json["amount"] == amount
    assert client.get(f"/payments/{response.json['id']}").json == response.json
    listed = client.get(f"/payments?creator={CREATOR}").json
    assert listed["total"] == 1 and listed["items"][0]["amount"] == amount
    assert client.get("/payments/999999").status_code == 404


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("amount", [str(2**256), "-1", "007", 5, 1.5, "1e3", ""], ids=str)
def test_an_amount_that_is_no_uint256_string_is_refused(client, amount):
    response = client.post("/payments", json={"name": "x", "amount": amount, "creator": CREATOR})
    assert response.status_code == 400
    assert "amount" in response.json["error"]


# --- shared rules ---------------------------------------------------------------------------


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


def test_healthz_reports_the_schema(client):
    assert client.get("/healthz").json == {"status": "ok", "schemaVersion": 2}


def test_the_served_app_answers_over_real_http(serve_collector):
    import httpx

    served = serve_collector(processes=1)
    created = httpx.post(served.url + "/deployments", json=deployment(), timeout=10)
    assert created.status_code == 201
    assert httpx.get(served.url + "/deployments/web-1", timeout=10).json()["name"] == "web-1"
    big = httpx.post(served.url + "/deployments", content=b"x" * 300_000, timeout=10)
    assert big.status_code == 413
