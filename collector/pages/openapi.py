"""``GET /openapi.json``: the OpenAPI 3.1 document of every route the collector serves.

The operations are in ``openapi_paths.py`` and the body schemas in ``openapi_schemas.py``.
The document is Python data rather than a YAML file so that the wheel the collector serves
(``wheel.py`` packs the ``.py`` files) carries it with no further rule. A test compares it
with Flask's URL map, so a route added without documentation fails, and schemathesis checks
the served collector against it.
"""

import functools
import importlib.metadata

from flask import Blueprint, jsonify

from collector.install.wheel import DISTRIBUTION
from collector.pages.openapi_paths import PATHS
from collector.pages.openapi_schemas import schemas
from collector.web.api import settings

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


@functools.cache
def document(wallet_format: str) -> dict:
    """The document for a collector of this wallet format (its wallet pattern differs)."""
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
        "paths": PATHS,
        "components": {
            "schemas": schemas(wallet_format),
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
    return jsonify(document(settings().wallet_format))
