"""``GET /openapi.json``: the OpenAPI 3.1 document of every route the collector serves.

The operations are in ``openapi_paths.py`` and the body schemas in ``openapi_schemas.py``.
The document is Python data rather than a YAML file so that the wheel the collector serves
(``wheel.py`` packs the ``.py`` files) carries it with no further rule. A test compares it
with Flask's URL map, so a route added without documentation fails, and schemathesis checks
the served collector against it.
"""

import functools
import importlib.metadata
import re

import msgspec
from flask import Blueprint, Flask, current_app, jsonify

from collector.install.wheel import DISTRIBUTION
from collector.pages.openapi_paths import PATHS
from collector.pages.openapi_schemas import schemas
from collector.web.api import settings
from collector.web.schema import REF_TEMPLATE, Operation, operations_of

bp = Blueprint("openapi", __name__)

# What each error status means, wherever an operation lists it; the body is {"error": "…"}.
ERRORS = {
    400: "Malformed JSON, or an unknown or invalid field or query parameter.",
    401: "Missing or wrong credentials: the operator's token, a wallet's session, a sign-in, "
    "or the Ed25519 signature.",
    403: "Not for this caller (a wallet acting for another, or on the operator's routes), or "
    "not possible on this collector as configured.",
    404: "No such resource, or (a path parameter holding `/`) no such route.",
    405: "A path parameter holding `/` named a route without this method.",
    408: "The request body did not arrive within `body_timeout`.",
    409: "A conflict with the current state: a duplicate, or a status transition.",
    413: "The request body is larger than `max_body_bytes`.",
    422: "A timestamp outside the accepted range, or env vars with no deployer configured.",
    429: "Too many: requests from this client address, or heartbeats of this wallet closer "
    "together than `min_interval`; `Retry-After` says when to try again.",
    502: "The deployer refused the change or could not be reached.",
    503: "The database is unavailable; `Retry-After` says when to try again.",
}

_TEXT = {"type": "string"}


# The heartbeat routes answer every error with serverTime too (Heartbeat<status>), and their
# 409 says whether the heartbeat is stored.
HEARTBEAT_STALE = (
    "Not later than the worker's last accepted heartbeat: `stored` says whether its time is "
    "already counted (a duplicate, or inside a window) or never can be (out of order)."
)


def _error_responses() -> dict:
    def content(schema: str) -> dict:
        return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}

    responses = {}
    for code, text in ERRORS.items():
        responses[str(code)] = {"description": text, "content": content("Error")}
        responses[f"Heartbeat{code}"] = (
            {"description": HEARTBEAT_STALE, "content": content("HeartbeatStale")}
            if code == 409
            else {"description": text, "content": content("HeartbeatRefused")}
        )
    for prefix in ("", "Heartbeat"):
        responses[f"{prefix}405"]["headers"] = {
            "Allow": {"description": "The methods the path has", "required": True, "schema": _TEXT}
        }
        for code in ("429", "503"):
            responses[f"{prefix}{code}"]["headers"] = {
                "Retry-After": {"description": "Seconds", "required": True, "schema": _TEXT}
            }
    return responses


# Methods Flask adds to every route by itself; and the front ends' dialect, which mirrors
# another API's shapes and is documented in the README (collector/pages/ui_v1.py).
_IMPLICIT = {"HEAD", "OPTIONS"}
_UNDOCUMENTED = "/api/v1/"


def _declared(app: Flask) -> tuple[dict, list[type]]:
    """The paths of every route that declares its operations (collector/web/schema.py), and
    the types they name."""
    paths: dict = {}
    kinds: list[type] = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(_UNDOCUMENTED) or rule.endpoint not in app.view_functions:
            continue
        declared = operations_of(app.view_functions[rule.endpoint])
        if not declared:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in sorted(rule.methods - _IMPLICIT):
            found = declared.get(method.lower()) or declared.get("")
            if found is not None:
                paths.setdefault(path, {})[method.lower()] = _operation(found)
                kinds.extend(found.types())
    return paths, kinds


def _operation(declared: Operation) -> dict:
    found: dict = {"summary": declared.summary}
    if declared.description:
        found["description"] = declared.description
    if declared.security is not None:
        found["security"] = list(declared.security)
    if declared.parameters:
        found["parameters"] = [p.document() for p in declared.parameters]
    if declared.body is not None:
        found["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(declared.body)}},
        }
    responses: dict = {}
    for status, reply in declared.replies.items():
        entry: dict = {"description": reply.description}
        if reply.kind is not None:
            entry["content"] = {"application/json": {"schema": _ref(reply.kind)}}
        elif reply.content is not None:
            entry["content"] = reply.content
        if reply.headers:
            entry["headers"] = reply.headers
        responses[str(status)] = entry
    for status in declared.errors:
        responses[str(status)] = {"$ref": f"#/components/responses/{declared.errors_named}{status}"}
    found["responses"] = responses
    return found


def _ref(kind: type) -> dict:
    return {"$ref": REF_TEMPLATE.format(name=kind.__name__)}


def document(app: Flask, wallet_format: str) -> dict:
    """The document for this app (its wallet pattern differs by wallet format); made once."""
    cached = app.extensions.get("tassium.openapi")
    if cached is None:
        cached = app.extensions["tassium.openapi"] = _document(app, wallet_format)
    return cached


def _document(app: Flask, wallet_format: str) -> dict:
    declared_paths, kinds = _declared(app)
    _, declared_schemas = msgspec.json.schema_components(
        list(dict.fromkeys(kinds)), ref_template=REF_TEMPLATE
    )
    return _assembled(wallet_format, declared_paths, declared_schemas)


@functools.cache
def _legacy(wallet_format: str) -> dict:
    return schemas(wallet_format)


def _assembled(wallet_format: str, declared_paths: dict, declared_schemas: dict) -> dict:
    paths = {path: dict(item) for path, item in PATHS.items()}
    for path, item in declared_paths.items():
        paths.setdefault(path, {}).update(item)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tassium collector",
            "version": importlib.metadata.version(DISTRIBUTION),
            "description": "Signed worker heartbeats in; uptime windows, worker status and "
            "the web UI's deployment and payment tables out. Any other method on these paths "
            "answers 405 with an Allow header, and any other path 404. On any route a "
            "request body that is malformed, too large or too slow is answered 400, 413 or "
            '408 before the route runs. Every error is {"error": "<message>"}; the heartbeat '
            "routes add serverTime to every answer, errors included, so that an agent learns "
            "the collector's clock from any of them.",
        },
        "paths": paths,
        "components": {
            "schemas": {**_legacy(wallet_format), **declared_schemas},
            "responses": _error_responses(),
            "securitySchemes": {
                "apiToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The operator's api_token: the operator routes need it, and "
                    "it acts for every wallet",
                },
                "walletSession": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A wallet's session token (tss_…), from POST /auth/session: "
                    "acts for that wallet alone",
                },
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(document(current_app, settings().wallet_format))
