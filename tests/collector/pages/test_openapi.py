"""The OpenAPI document: valid OpenAPI 3.1, naming every route Flask serves, and kept by the
served collector under schemathesis' generated requests on SQLite and PostgreSQL."""

import re

import httpx
import hypothesis
import hypothesis.errors
import hypothesis.strategies as st
import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from collector.app import create_app
from collector.config import CollectorConfig
from collector.install import wheel
from collector.money.report_routes import MAX_FLEET_PAGE
from collector.money.reports import MAX_SPANS_SHOWN
from collector.store import db
from collector.uptime.windows import MAX_RECORDS_PAGE
from collector.uptime.workers import MAX_METRICS_POINTS
from collector.web.api import MAX_PAGE
from protocol.times import format_timestamp, utcnow
from tests.conftest import receipt_key_file
from tests.factories import CREATOR, FakeWorker, deployment

API_TOKEN = "openapi-test-token-0123456789"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Requests per operation and generation mode (valid, invalid); about 1,500 per backend, which
# keeps the run at about 25 s a backend (CI time is tight: more operations, fewer examples).
EXAMPLES = 25
# Methods Flask adds to every route by itself.
_IMPLICIT = {"HEAD", "OPTIONS"}
# The Tassium front ends' dialect (collector/pages/ui_v1.py) is left out of the document and of
# the fuzzing: it mirrors another API's shapes (plain arrays, its own names), is documented in
# docs/api.md, and is replayed call by call as those clients make them in test_ui_v1.py.
DIALECT = "/api/v1/"


def documented_here(path: str) -> bool:
    return not path.startswith(DIALECT)


def _app(tmp_path, **settings):
    # These routes need no database; the app still binds one.
    return create_app(
        CollectorConfig(
            database_url=f"sqlite:///{tmp_path / 'unused.db'}",
            receipt_key_file=receipt_key_file(tmp_path),
            **settings,
        )
    )


@pytest.fixture(params=["evm", "stellar"])
def document(request, tmp_path) -> dict:
    response = _app(tmp_path, wallet_format=request.param).test_client().get("/openapi.json")
    db.database.close()
    assert response.status_code == 200
    return response.get_json()


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1.")
    schemathesis.openapi.from_dict(document).validate()


def test_the_document_names_every_route_and_method_flask_serves(document, tmp_path):
    app = _app(tmp_path)
    served = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if documented_here(rule.rule)
        for method in rule.methods - _IMPLICIT
    }
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert served == documented


def test_any_other_method_on_a_documented_path_is_405_with_allow(document, tmp_path):
    client = _app(tmp_path).test_client()
    templates = {re.sub(r"{\w+}", "[^/]+", path): item for path, item in document["paths"].items()}
    for path in document["paths"]:
        url = re.sub(r"{\w+}", "1", path)
        # /workers/enroll is also /workers/{address}: every path the URL fits counts.
        documented = {
            method.upper()
            for template, item in templates.items()
            if re.fullmatch(template, url)
            for method in item
        }
        implicit = {"OPTIONS", "HEAD"} if "GET" in documented else {"OPTIONS"}
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE", "TRACE"} - documented:
            response = client.open(url, method=method)
            assert response.status_code == 405, (method, path)
            assert set(response.headers["Allow"].split(", ")) == documented | implicit
            assert response.json["error"]


def test_every_error_answer_is_documented_as_an_error_object(document):
    shared = document["components"]["responses"]
    schemas = document["components"]["schemas"]
    for name, response in shared.items():
        ref = response["content"]["application/json"]["schema"]["$ref"]
        schema = schemas[ref.rpartition("/")[2]]
        assert "error" in schema["required"], name
        if name.startswith("Heartbeat"):
            # An agent learns the collector's clock from any answer of the heartbeat routes.
            assert "serverTime" in schema["required"], name
            assert ("stored" in schema["required"]) == (name == "Heartbeat409"), name
        else:
            assert ref == "#/components/schemas/Error", name


def test_the_heartbeat_routes_document_serverTime_on_every_answer(document):
    for path in ("/heartbeat", "/heartbeats", "/heartbeat/ping"):
        for status, response in document["paths"][path]["post"]["responses"].items():
            if "$ref" in response:
                assert response["$ref"] == f"#/components/responses/Heartbeat{status}"
            else:
                ref = response["content"]["application/json"]["schema"]["$ref"]
                schema = document["components"]["schemas"][ref.rpartition("/")[2]]
                assert "serverTime" in schema["required"], (path, status)


# Every list route and the maximum its limit documents (DESIGN.md: every list is bounded).
BOUNDED = {
    "/workers": MAX_PAGE,
    "/deployments": MAX_PAGE,
    "/payments": MAX_PAGE,
    "/payouts": MAX_PAGE,
    "/payouts/{period}": MAX_PAGE,
    "/workers/{address}/metrics": MAX_METRICS_POINTS,
    "/workers/{address}/uptime": MAX_RECORDS_PAGE,
    "/reports/fleet": MAX_FLEET_PAGE,
    "/reports/workers/{address}": MAX_SPANS_SHOWN,
}


def test_every_list_route_documents_the_maximum_of_its_limit(document):
    for path, maximum in BOUNDED.items():
        [limit] = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == "limit"]
        assert limit["schema"]["maximum"] == maximum, path
        assert 1 <= limit["schema"]["default"] <= maximum, path


def test_every_reference_in_the_document_resolves(document):
    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    found = set(refs(document))
    assert "#/components/schemas/PayoutPage" in found
    for ref in found:
        _, section, name = ref.removeprefix("#/").split("/")
        assert name in document["components"][section], ref


class Fuzzer:
    """Sends generated requests for one operation to one collector and keeps what the checks
    found, so that one run reports every operation that broke the document."""

    def __init__(self, session: requests.Session, wallet: str):
        self.session = session
        self.wallet = wallet  # a worker that exists, for the routes that need one
        self.found: list[str] = []
        self.sent = 0

    def fuzz(self, operation, base_url: str, **path_parameters) -> None:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(
                generation_mode=mode, path_parameters=path_parameters or None
            )
            if mode.is_positive:
                strategy = st.builds(_steer, strategy, st.booleans(), st.just(self.wallet))
            try:
                self._run(strategy, base_url)
            except hypothesis.errors.Unsatisfiable:
                pass  # nothing to make invalid: no parameters, or only fixed ones
            except (
                Exception,
                BaseExceptionGroup,
            ) as exc:  # schemathesis' FailureGroup is a base one
                fixed = f" with {path_parameters}" if path_parameters else ""
                self.found.append(f"{operation.label}{fixed}, {mode.value}, {base_url}:\n{exc}")

    def _run(self, strategy, base_url: str) -> None:
        @hypothesis.given(case=strategy)
        @hypothesis.settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        def run(case):
            self.sent += 1
            case.call_and_validate(
                base_url=base_url,
                session=self.session,
                headers={"Authorization": f"Bearer {API_TOKEN}"},
                checks=CHECKS,
                timeout=10,
            )

        run()


def _steer(case, now: bool, wallet: str):
    """Steer valid requests past rules no schema can state, so that they reach the rest of
    the route: generated mixed-case addresses almost never carry their EIP-55 checksum
    (lower-case ones need none), a generated heartbeat or ping time is almost never within
    max_backfill (max_skew) of now, and a ping from a worker never seen is a 404 (half of them
    are sent as now, those pings from an existing worker)."""
    for part in (case.body, case.query, case.path_parameters):
        if isinstance(part, dict):
            for name in ("walletAddress", "creator", "wallet", "address"):
                if isinstance(part.get(name), str):
                    part[name] = part[name].lower()
    path = case.operation.path
    if now and path in ("/heartbeat", "/heartbeat/ping") and isinstance(case.body, dict):
        case.body["timestamp"] = format_timestamp(utcnow())
        if path == "/heartbeat/ping":
            case.body["walletAddress"] = wallet
    return case


def _seed(served_url: str) -> tuple[str, dict[str, dict]]:
    """One of each resource, for the operations that read or change one by its path."""
    worker = FakeWorker()
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    assert worker.enroll_at(served_url).status_code == 201
    with httpx.Client(base_url=served_url) as client:
        raw, headers = worker.signed(worker.heartbeat_body())
        assert client.post("/heartbeat", content=raw, headers=headers).status_code == 200
        created = client.post("/deployments", json=deployment(name="seeded"), headers=auth)
        assert created.status_code == 201
        paid = client.post(
            "/payments", json={"name": "seeded", "amount": "1", "creator": CREATOR}, headers=auth
        )
        assert paid.status_code == 201
    address = {"address": worker.wallet}
    return worker.wallet, {
        "/workers/{address}": address,
        "/workers/{address}/containers": address,
        "/workers/{address}/uptime": address,
        "/workers/{address}/status": address,
        "/workers/{address}/metrics": address,
        "/deployments/{name}": {"name": "seeded"},
        "/deployments/{name}/status": {"name": "seeded"},
        "/deployments/{name}/replicas": {"name": "seeded"},
        "/deployments/{name}/env": {"name": "seeded"},
        "/payments/{payment_id}": {"payment_id": paid.json()["id"]},
        "/packages/{name}": {"name": wheel.current().filename},
    }


@pytest.mark.slow
def test_the_served_collector_keeps_to_its_document(serve_collector, backend):
    served = serve_collector(api_token=API_TOKEN)
    # Heartbeats also reach the window logic when signatures are not required.
    unsigned = serve_collector(api_token=API_TOKEN, require_signatures=False)
    wallet, seeded = _seed(served.url)
    schema = schemathesis.openapi.from_url(served.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [operation for operation in operations if documented_here(operation.path)]
    # Deleting the seeded deployment comes last, after the operations that read or move it.
    operations.sort(key=lambda operation: operation.method.upper() == "DELETE")
    with requests.Session() as session:
        fuzzer = Fuzzer(session, wallet)
        for operation in operations:
            fuzzer.fuzz(operation, served.url)
            if operation.path in seeded:
                fuzzer.fuzz(operation, served.url, **seeded[operation.path])
            if operation.path in ("/heartbeat", "/heartbeat/ping"):
                fuzzer.fuzz(operation, unsigned.url)
    assert not fuzzer.found, "\n\n".join(fuzzer.found)
    assert fuzzer.sent > 1000
