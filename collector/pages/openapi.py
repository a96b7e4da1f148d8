"""``GET /openapi.json``: the OpenAPI 3.1 document of every route the collector serves.

It is made from the routes themselves: each view's ``@operation`` (collector/web/schema.py)
and the msgspec types it names, whose JSON Schemas are the same declarations that decode the
requests and encode the answers. What a route's access rule and the rate limits decide (who
may call, its 401, 403 and 429) is read from those rules, not written again. A test compares
the document with Flask's URL map, so a route added without a declaration fails, and
schemathesis checks the served collector against it.
"""

import importlib.metadata
import re
from collections.abc import Callable

import msgspec
from flask import Blueprint, Flask, current_app, jsonify

from collector.identity.access import ensure_operator
from collector.install.wheel import DISTRIBUTION
from collector.uptime import heartbeats
from collector.web.api import ACCESS, ensure_page_token, settings
from collector.web.ratelimits import rule_for
from collector.web.schema import (
    OPERATOR,
    PRIVATE_PAGE,
    REF_TEMPLATE,
    Error,
    Operation,
    Reply,
    operation,
    operations_of,
    whole_match,
)
from protocol import patterns

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
# another API's shapes and is documented in docs/api.md (collector/pages/ui_v1.py).
_IMPLICIT = {"HEAD", "OPTIONS"}
_UNDOCUMENTED = "/api/v1/"


def _declared(app: Flask) -> tuple[dict, list[type]]:
    """The paths of every documented route, from its view's declarations, and the types
    they name. A route without a declaration is an error: nothing is served undocumented."""
    paths: dict = {}
    kinds: list[type] = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(_UNDOCUMENTED):
            continue
        view = app.view_functions[rule.endpoint]
        declared = operations_of(view)
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in sorted(rule.methods - _IMPLICIT):
            found = declared.get(method.lower()) or declared.get("")
            if found is None:
                raise LookupError(f"{method} {rule.rule} declares no @operation")
            paths.setdefault(path, {})[method.lower()] = _operation(
                found, getattr(view, ACCESS, None), limited=bool(rule_for(rule.rule, method))
            )
            kinds.extend(found.types())
    return paths, kinds


def _operation(declared: Operation, access: Callable | None, *, limited: bool) -> dict:
    """An operation as the document has it; its security and the statuses of its access rule
    and of the rate limits from those rules themselves."""
    security, errors = declared.security, list(declared.errors)
    if access is ensure_operator:
        security, errors = OPERATOR, [*errors, 401, 403]
    elif access is ensure_page_token:
        security, errors = PRIVATE_PAGE, [*errors, 401]
    if limited:
        errors.append(429)
    found: dict = {"summary": declared.summary}
    if declared.description:
        found["description"] = declared.description
    if security is not None:
        found["security"] = list(security)
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
    for status in sorted(set(errors)):
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


# Types the document names though no operation does: the shared refusals
# (_error_responses), and the results a batch's answer refers to.
NAMED = (Error, heartbeats.HeartbeatRefused, heartbeats.HeartbeatStale, *heartbeats.RESULTS)


def _wallet(wallet_format: str) -> dict:
    """``Wallet``, which every wallet field refers to: its pattern is the collector's format's."""
    if wallet_format == "evm":
        regex, description = (
            patterns.EVM_WALLET,
            "A mixed-case address must carry its EIP-55 checksum; answered lower-case",
        )
    else:
        regex, description = (
            patterns.STELLAR_WALLET,
            "A Stellar account public key (its CRC16 checked)",
        )
    return {"type": "string", "pattern": whole_match(regex), "description": description}


def _document(app: Flask, wallet_format: str) -> dict:
    paths, kinds = _declared(app)
    _, schemas = msgspec.json.schema_components(
        list(dict.fromkeys([*kinds, *NAMED])), ref_template=REF_TEMPLATE
    )
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
            "schemas": {**schemas, "Wallet": _wallet(wallet_format)},
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
@operation(
    summary="This document",
    replies={
        200: Reply(
            "The OpenAPI 3.1 document",
            content={"application/json": {"schema": {"type": "object"}}},
        )
    },
)
def openapi_json():
    return jsonify(document(current_app, settings().wallet_format))
