"""Deployments (the plan's projects): create with validation, the UI's field names,
conflicts, the status machine, listing and deleting; a rejected request writes nothing."""

import pytest

from collector.store.models import Project
from tests.factories import CREATOR, deployment, new_wallet


@pytest.fixture
def client(operator):
    """These tests act as the operator, who may change every deployment; what a wallet or a
    stranger may do is tests/collector/identity/test_access.py's."""
    return operator


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
        (deployment(url="https://x.example/\ud800"), "url contains a lone UTF-16 surrogate"),
        (deployment(url="https://x.example/\u0000"), "url contains a NUL character"),
        (deployment(**{"\ud800": 1}), "request body contains a lone UTF-16 surrogate"),
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


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("name", ["a%00b", "a%0Ab", "web-1%00", "%F0%9F%98%80"])
@pytest.mark.parametrize("method", ["get", "delete", "patch"])
def test_a_name_that_cannot_exist_is_unknown(client, name, method):
    path = f"/deployments/{name}" + ("/status" if method == "patch" else "")
    response = getattr(client, method)(path, json={"status": "processing"})
    assert response.status_code == 404 and "no deployment named" in response.json["error"]


def test_delete_removes_the_deployment(client):
    client.post("/deployments", json=deployment())
    assert client.delete("/deployments/web-1").status_code == 204
    assert client.get("/deployments/web-1").status_code == 404
    assert client.delete("/deployments/web-1").status_code == 404
