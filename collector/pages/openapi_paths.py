"""The operations of the OpenAPI document (``collector/pages/openapi.py``): one entry per route,
with every status the route answers. Error statuses refer to the shared responses there."""

from collector.money.payouts import BASES, DEFAULT_BASIS, MAX_JSON_SHARES
from collector.money.report_routes import FLEET_PAGE, MAX_FLEET_PAGE
from collector.money.reports import MAX_SPANS_SHOWN, SPANS_SHOWN
from collector.pages.dashboard import PAGE_SIZE
from collector.uptime.windows import MAX_RECORDS_PAGE, RECORDS_PAGE
from collector.uptime.workers import MAX_METRICS_HOURS, MAX_METRICS_POINTS, METRICS_POINTS
from collector.web.api import DEFAULT_PAGE, MAX_OFFSET, MAX_PAGE
from collector.web.ratelimits import rule_for
from protocol.heartbeat import SIGNATURE_HEADER


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _body(schema: str) -> dict:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema)}}}


def _errors(*statuses: int, shared: str = "") -> dict:
    return {str(s): {"$ref": f"#/components/responses/{shared}{s}"} for s in statuses}


def _query(name: str, schema: dict, description: str) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str, schema: dict) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema}


# Every route reads the database except /openapi.json and /packages/<wheel>.
_DB = (503,)
_WRITE = (400, 408, 413, *_DB)  # a JSON body is read and parsed
_TOKEN = [{"apiToken": []}, {}]  # the private pages: the operator's token, when they are private
_OPERATOR = [{"apiToken": []}]  # the operator routes (collector/identity/access.py)
_OWNER = [{"apiToken": []}, {"walletSession": []}]  # what belongs to one wallet
_SIGNED = {
    "name": SIGNATURE_HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9+/]{86}==$"},
    "description": "The Ed25519 signature of the exact request body, base64",
}
_CHALLENGE_ID = _path("nonce", {"type": "string"})


def _limit(default: int, maximum: int, description: str) -> dict:
    """A list's bound: more than ``maximum`` is a 400 naming the range."""
    schema = {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}
    return _query("limit", schema, description)


_PAGE = [
    _limit(DEFAULT_PAGE, MAX_PAGE, "page size"),
    _query(
        "offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0}, "skip"
    ),
]
_PERIOD = _query(
    "period",
    {"type": "string", "default": "30d"},
    "24h, 7d, 30d, a UTC month like 2026-11, or an interval like "
    "2026-11-01T00:00:00Z/2026-11-15T00:00:00Z",
)
_FLEET = [
    _PERIOD,
    _query("after", _ref("Wallet"), "the page after this wallet (the previous page's next)"),
    _limit(FLEET_PAGE, MAX_FLEET_PAGE, "page"),
]


def _csv(description: str) -> dict:
    return {"description": description, "content": {"text/csv": {"schema": {"type": "string"}}}}


_CREATOR = _query("creator", _ref("Wallet"), "only this creator's entries")
_WALLET = _path("address", _ref("Wallet"))
_NAME = _path("name", {"type": "string", "minLength": 1})
_SCRIPT = {
    "content": {"text/x-shellscript": {"schema": {"type": "string"}}},
    "headers": {"Cache-Control": {"required": True, "schema": {"const": "no-store"}}},
}
_HTML = {"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}}

PATHS = {
    "/healthz": {
        "get": {
            "summary": "Health: the database answers and its schema is current",
            "responses": {
                "200": _json("Health", "Healthy"),
                "503": _json("Health", "Database unavailable or schema not current"),
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "The OpenAPI 3.1 document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
    "/heartbeat": {
        "post": {
            "summary": "A worker's signed heartbeat: extends or opens its uptime window",
            "parameters": [_SIGNED],
            "requestBody": _body("Heartbeat"),
            "responses": {
                "200": _json("HeartbeatAccepted", "Accepted"),
                **_errors(*_WRITE, 401, 404, 409, 422, 429, shared="Heartbeat"),
            },
        }
    },
    "/heartbeat/ping": {
        "post": {
            "summary": "A worker's signed ping: moves its live status, nothing else",
            "description": "Kept in the serving process's memory and written every few "
            "seconds; other processes' status reads see it after that write.",
            "parameters": [_SIGNED],
            "requestBody": _body("Ping"),
            "responses": {
                "200": _json("PingAccepted", "Taken"),
                **_errors(*_WRITE, 401, 404, 422, shared="Heartbeat"),
            },
        }
    },
    "/heartbeats": {
        "post": {
            "summary": "A batch of signed heartbeats, for an agent replaying its backlog",
            "requestBody": _body("HeartbeatBatch"),
            "responses": {
                "200": _json("HeartbeatResults", "One result per heartbeat, in order"),
                **_errors(*_WRITE, shared="Heartbeat"),
            },
        }
    },
    "/workers/enroll": {
        "post": {
            "summary": "Bind an Ed25519 public key to a wallet with an operator's token "
            "(signed by that key); without one, only the same key again",
            "parameters": [_SIGNED],
            "requestBody": _body("Enrollment"),
            "responses": {
                "200": _json("Enrolled", "The same key was enrolled already, or replaced"),
                "201": _json("Enrolled", "Enrolled"),
                **_errors(*_WRITE, 401, 403, 409),
            },
        }
    },
    "/workers/enroll/challenge": {
        "post": {
            "summary": "A one-time text for the wallet to sign, naming this collector, the "
            "wallet, the agent key and an expiry (signed by that key)",
            "parameters": [_SIGNED],
            "requestBody": _body("ChallengeRequest"),
            "responses": {
                "201": _json("Challenge", "Made; the owner signs its message"),
                **_errors(*_WRITE, 401, 403),
            },
        }
    },
    "/workers/enroll/challenge/{nonce}": {
        "get": {
            "summary": "A challenge and its state (pending, used or expired)",
            "parameters": [_CHALLENGE_ID],
            "responses": {"200": _json("Challenge", "The challenge"), **_errors(400, 404, *_DB)},
        },
        "post": {
            "summary": "The wallet's signature over the challenge (EIP-191 personal_sign or "
            "SEP-53): enrolls its key, once",
            "parameters": [_CHALLENGE_ID],
            "requestBody": _body("ChallengeSignature"),
            "responses": {
                "200": _json("Enrolled", "The key was enrolled already, or replaced"),
                "201": _json("Enrolled", "Enrolled"),
                **_errors(*_WRITE, 401, 403, 404, 409),
            },
        },
    },
    "/auth/challenge": {
        "post": {
            "summary": "A one-time sign-in message (EIP-4361) for a wallet to sign",
            "requestBody": _body("SignInRequest"),
            "responses": {
                "201": _json("SignInChallenge", "Made; the wallet signs its message"),
                **_errors(*_WRITE),
            },
        }
    },
    "/auth/session": {
        "post": {
            "summary": "Trade a signed sign-in message for a session token of that wallet",
            "requestBody": _body("SignInSignature"),
            "responses": {
                "201": _json("Session", "Signed in"),
                **_errors(*_WRITE, 401),
            },
        },
        "get": {
            "summary": "Who the bearer token acts for",
            "security": _OWNER,
            "responses": {"200": _json("SessionInfo", "The caller"), **_errors(401, *_DB)},
        },
        "delete": {
            "summary": "Sign out: the session token stops working at once",
            "security": [{"walletSession": []}],
            "responses": {"204": {"description": "Signed out"}, **_errors(401, *_DB)},
        },
    },
    "/workers/tokens": {
        "post": {
            "summary": "Issue a single-use enrollment token for a wallet",
            "security": [{"apiToken": []}],
            "requestBody": _body("TokenRequest"),
            "responses": {
                "201": _json("Token", "Issued"),
                **_errors(*_WRITE, 401, 403),
            },
        }
    },
    "/workers": {
        "get": {
            "summary": "Every worker, by wallet",
            "parameters": [
                *_PAGE,
                _query(
                    "after",
                    _ref("Wallet"),
                    "the page after this wallet (a page's next), instead of offset: "
                    "no rows skipped and no total counted, however large the fleet",
                ),
            ],
            "responses": {"200": _json("WorkerSummaryPage", "A page"), **_errors(400, *_DB)},
        }
    },
    "/workers/{address}": {
        "get": {
            "summary": "One worker with its open window and containers",
            "parameters": [_WALLET],
            "responses": {"200": _json("Worker", "The worker"), **_errors(400, 404, *_DB)},
        }
    },
    "/workers/{address}/containers": {
        "get": {
            "summary": "The containers of a worker's last heartbeat",
            "parameters": [_WALLET],
            "responses": {"200": _json("Containers", "Its containers"), **_errors(400, 404, *_DB)},
        }
    },
    "/workers/{address}/status": {
        "get": {
            "summary": "A worker's live status, from its last ping or heartbeat",
            "parameters": [_WALLET],
            "responses": {
                "200": _json("WorkerStatus", "Its status"),
                **_errors(400, 404, *_DB),
            },
        }
    },
    "/workers/{address}/metrics": {
        "get": {
            "summary": "A worker's metrics points (one per accepted heartbeat), oldest first",
            "parameters": [
                _WALLET,
                _query(
                    "hours",
                    {"type": "integer", "minimum": 1, "maximum": MAX_METRICS_HOURS, "default": 1},
                    "the last this many hours",
                ),
                _limit(
                    METRICS_POINTS,
                    MAX_METRICS_POINTS,
                    "the most points answered: past it they are thinned evenly over the hours "
                    "(every n-th, the newest kept); total counts them all",
                ),
            ],
            "responses": {"200": _json("Metrics", "Its points"), **_errors(400, 404, *_DB)},
        }
    },
    "/workers/{address}/uptime": {
        "get": {
            "summary": "Uptime records and seconds between from and to",
            "parameters": [
                _WALLET,
                _query("from", _ref("Timestamp"), "start; default: 24 hours before to"),
                _query("to", _ref("Timestamp"), "end; default: now"),
                _query("after", _ref("Timestamp"), "the records ending after this (a page's next)"),
                _limit(
                    RECORDS_PAGE,
                    MAX_RECORDS_PAGE,
                    "records a page lists; the totals count every record in the range",
                ),
            ],
            "responses": {
                "200": _json("Uptime", "Uptime in the range"),
                **_errors(400, 404, 422, *_DB),
            },
        }
    },
    **{
        path: {
            "get": {
                "summary": summary,
                "parameters": parameters,
                "responses": {
                    "200": _csv(description)
                    if path.endswith(".csv")
                    else _json(schema, description),
                    **_errors(400, 404, *_DB),
                },
            }
        }
        for path, summary, schema, description, parameters in (
            (
                "/reports/fleet",
                "Every worker's uptime and credits in a period, by wallet",
                "FleetReport",
                "A page of the fleet report (text/csv: all of it)",
                _FLEET,
            ),
            (
                "/reports/fleet.csv",
                "The fleet report as CSV, streamed",
                None,
                "The fleet report",
                _FLEET[:2],
            ),
            (
                "/reports/workers/{address}",
                "A worker's uptime and each downtime with its cause",
                "WorkerReport",
                "The worker's report (text/csv: all of its downtime)",
                [
                    _WALLET,
                    _PERIOD,
                    _limit(
                        SPANS_SHOWN,
                        MAX_SPANS_SHOWN,
                        "the period's last this many uptime spans and downtimes listed (JSON); "
                        "uptimeCount and downtimeCount count them all",
                    ),
                ],
            ),
            (
                "/reports/workers/{address}.csv",
                "A worker's downtime as CSV",
                None,
                "from,to,seconds,cause",
                [_WALLET, _PERIOD],
            ),
        )
    },
    "/deployments": {
        "post": {
            "summary": "Create a deployment (pending; processing when a deployer builds it)",
            "security": _OWNER,
            "requestBody": _body("NewDeployment"),
            "responses": {
                "201": _json("Deployment", "Created"),
                **_errors(*_WRITE, 401, 403, 409, 422),
            },
        },
        "get": {
            "summary": "Deployments, newest first",
            "parameters": [
                _CREATOR,
                _query("status", _ref("DeploymentStatus"), "only in this status"),
                *_PAGE,
            ],
            "responses": {"200": _json("DeploymentPage", "A page"), **_errors(400, *_DB)},
        },
    },
    "/deployments/{name}": {
        "get": {
            "summary": "One deployment",
            "parameters": [_NAME],
            "responses": {
                "200": _json("Deployment", "The deployment"),
                **_errors(404, 405, *_DB),
            },
        },
        "delete": {
            "summary": "Delete a deployment",
            "security": _OWNER,
            "parameters": [_NAME],
            "responses": {
                "204": {"description": "Deleted"},
                **_errors(401, 403, 404, 405, 502, *_DB),
            },
        },
    },
    "/deployments/{name}/status": {
        "patch": {
            "summary": "Move a deployment: pending → processing → success | failed",
            "security": _OWNER,
            "parameters": [_NAME],
            "requestBody": _body("StatusChange"),
            "responses": {
                "200": _json("Deployment", "Moved"),
                **_errors(*_WRITE, 401, 403, 404, 405, 409),
            },
        }
    },
    "/deployments/{name}/replicas": {
        "patch": {
            "summary": "Scale a deployment (1 to 10 replicas)",
            "security": _OWNER,
            "parameters": [_NAME],
            "requestBody": _body("ReplicasChange"),
            "responses": {
                "200": _json("Deployment", "Scaled"),
                **_errors(*_WRITE, 401, 403, 404, 405),
            },
        }
    },
    "/deployments/{name}/env": {
        "patch": {
            "summary": "Restart a deployment with new env vars, through the deployer",
            "security": _OWNER,
            "parameters": [_NAME],
            "requestBody": _body("EnvChange"),
            "responses": {
                "200": _json("Deployment", "The deployer took them"),
                **_errors(*_WRITE, 401, 403, 404, 405, 422, 502),
            },
        }
    },
    "/payments": {
        "post": {
            "summary": "Record a payment",
            "security": _OPERATOR,
            "requestBody": _body("NewPayment"),
            "responses": {"201": _json("Payment", "Recorded"), **_errors(*_WRITE, 401)},
        },
        "get": {
            "summary": "Payments, newest first",
            "parameters": [_CREATOR, *_PAGE],
            "responses": {"200": _json("PaymentPage", "A page"), **_errors(400, *_DB)},
        },
    },
    "/payouts": {
        "post": {
            "summary": "Record a period's payout: one payment per share, once per period",
            "description": "409 when a different payout was recorded for the period, when the "
            "payout was paid by another transaction, or when the period overlaps one recorded "
            "under another label; 422 when nobody earned anything in the period or it is not "
            "final yet.",
            "security": _OPERATOR,
            "requestBody": _body("NewPayout"),
            "responses": {
                "201": _json("Payout", "Recorded"),
                "200": _json("Payout", "Recorded before, with the same inputs"),
                **_errors(*_WRITE, 401, 409, 422),
            },
        },
        "get": {
            "summary": "Recorded payouts, latest period first, without their payments",
            "description": "Each payout's paymentCount counts its payments; "
            "GET /payouts/{period} pages them.",
            "parameters": _PAGE,
            "responses": {"200": _json("PayoutPage", "A page"), **_errors(400, *_DB)},
        },
    },
    **{
        path: {
            "get": {
                "summary": "Split a budget over the workers of a period (nothing recorded)",
                "description": "The CSV streams every share, whatever the fleet: the operator's "
                "file. The JSON is whole, so that its inputs hash to inputsSha256, and holds at "
                f"most {MAX_JSON_SHARES} shares: past them it is a 422 naming the CSV.",
                "parameters": [
                    {**_PERIOD, "required": True},
                    {
                        **_query("budget", {"type": "string"}, "a uint256, decimal"),
                        "required": True,
                    },
                    _query(
                        "basis",
                        {"enum": list(BASES), "default": DEFAULT_BASIS},
                        "what the shares weigh: counted uptime or credits",
                    ),
                ],
                "responses": {
                    "200": _csv("walletAddress,weight,amount")
                    if path.endswith(".csv")
                    else _json("PayoutPlan", "The split, its inputs and their SHA-256"),
                    **_errors(400, 422, *_DB),
                },
            }
        }
        for path in ("/payouts/export", "/payouts/export.csv")
    },
    "/payouts/{period}": {
        "get": {
            "summary": "A recorded payout, with a page of its payments by wallet",
            "parameters": [_path("period", {"type": "string", "minLength": 1}), *_PAGE],
            "responses": {"200": _json("Payout", "The payout"), **_errors(400, 404, *_DB)},
        }
    },
    "/payments/{payment_id}": {
        "get": {
            "summary": "One payment",
            "parameters": [_path("payment_id", {"type": "integer", "minimum": 0})],
            "responses": {"200": _json("Payment", "The payment"), **_errors(404, *_DB)},
        }
    },
    **{
        route: {
            "get": {
                "summary": "The worker install script for a wallet"
                + (" (the plan's name for /setup.sh)" if route == "/api/setup" else ""),
                "parameters": [
                    {
                        **_query("wallet", _ref("Wallet"), "the worker owner's wallet"),
                        "required": True,
                    },
                    _query("token", {"type": "string"}, "an enrollment token for that wallet"),
                ],
                "responses": {
                    "200": {"description": "The script, ready for `| sudo bash`", **_SCRIPT},
                    "400": {"description": "A script that prints why and exits 1", **_SCRIPT},
                    **_errors(*_DB),
                },
            }
        }
        for route in ("/setup.sh", "/api/setup")
    },
    "/packages/{name}": {
        "get": {
            "summary": "The wheel of the collector's own code, which the install script installs",
            "parameters": [_path("name", {"type": "string", "minLength": 1})],
            "responses": {
                "200": {
                    "description": "The wheel (ETag: its sha256)",
                    "content": {"application/octet-stream": {}},
                },
                "304": {"description": "Not modified (If-None-Match)"},
                **_errors(404, 405),
            },
        }
    },
    "/": {
        "get": {
            "summary": "The dashboard: the fleet, its uptime bars and containers, the deployments",
            "description": "HTML for browsers. With `private_pages` it needs the API token, as "
            "a bearer token or as the password of HTTP Basic (a 401 challenges for it).",
            "security": _TOKEN,
            "parameters": [
                _query("wallet", {"type": "string"}, "only this wallet's worker and deployments"),
                _query(
                    "after",
                    {"type": "string"},
                    f"the fleet's page after this wallet, {PAGE_SIZE} workers a page (a search "
                    "by wallet finds a worker on any page)",
                ),
                _query("fragment", {"type": "string"}, "1: only the live part, for refreshing"),
            ],
            "responses": {
                "200": _HTML,
                "400": {**_HTML, "description": "The page, saying what is wrong with the query"},
                **_errors(401, *_DB),
            },
        }
    },
    "/enroll/{nonce}": {
        "get": {
            "summary": "The owner's page for an enrollment challenge: signing it in the browser",
            "description": "HTML for browsers, open to all (the owner has no API token): the "
            "challenge's wallet, agent key, expiry and text, and a button that has the browser "
            "wallet sign the text and sends the signature to "
            "`POST /workers/enroll/challenge/{nonce}`. A used or expired challenge is a 200 "
            "page saying so.",
            "parameters": [_path("nonce", {"type": "string"})],
            "responses": {
                "200": _HTML,
                "400": {**_HTML, "description": "The page, saying what is wrong with the id"},
                "404": {
                    "description": "The page, saying no such challenge is known (a path that "
                    "cannot be a challenge id at all is the usual JSON error)",
                    "content": {**_HTML["content"], "application/json": {"schema": _ref("Error")}},
                },
                **_errors(*_DB),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics: heartbeats, request latency, the fleet, the sweeper",
            "description": "The Prometheus text format, summed over every serving process. "
            "With `private_pages` it needs the API token, as on `/`. While the database is "
            "unavailable it still answers, with `tassium_database_up 0` and no fleet gauges.",
            "security": _TOKEN,
            "responses": {
                "200": {
                    "description": "The metrics",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_errors(401),
            },
        }
    },
}

# Who may call what (collector/identity/access.py): the operator's routes, reads included, and a
# worker's report, which is its owner's.
_OPERATOR_PATHS = ("/payouts", "/payments", "/workers/tokens", "/reports/fleet")
for _path, _item in PATHS.items():
    for _operation in _item.values():
        if _path.startswith(_OPERATOR_PATHS):
            _operation["security"] = _OPERATOR
        elif _path.startswith("/reports/workers/"):
            _operation["security"] = _OWNER
        else:
            continue
        _operation["responses"].update(_errors(401, 403))

# Every write route but the heartbeats' is limited per client address (collector/web/ratelimits.py),
# decided by the same function as the requests, so a write route documented later has it too.
for _path, _item in PATHS.items():
    for _method, _operation in _item.items():
        if rule_for(_path, _method.upper()):
            _operation["responses"].update(_errors(429))
