"""The JSON Schemas of the OpenAPI document (``collector/pages/openapi.py``): request and response
bodies. The patterns are the ones the routes check, taken from where they are defined."""

import re

from collector.config import TOKEN_TTL_MAX, TOKEN_TTL_MIN
from collector.money import reports
from collector.money.payments import _AMOUNT
from collector.money.payouts import BASES, DEFAULT_BASIS
from collector.projects.deployments import (
    _BRANCH,
    _ENV_NAME,
    _GITHUB,
    _NAME,
    _URL,
    MAX_ENV_VALUE,
    MAX_ENV_VARS,
    MAX_REPLICAS,
    STATUSES,
)
from collector.uptime import capacity
from collector.uptime.heartbeats import MAX_BATCH
from collector.uptime.pings import DEAD, HEALTHY, UNKNOWN, WARNING
from collector.web.api import MAX_PAGE
from protocol import patterns
from protocol.heartbeat import (
    MAX_CONTAINER_COUNT,
    MAX_CONTAINER_CPU_PERCENT,
    MAX_CONTAINERS,
    MAX_CPU_CORES,
    MAX_GB,
    MAX_MEMORY_MB,
    MAX_TEXT,
)

# A dotted-quad IPv4 address as Python's ipaddress reads it (no leading zeros).
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"


def pattern(regex: re.Pattern | str) -> str:
    """A whole-value JSON Schema pattern from one of ours (those are used with fullmatch)."""
    text = regex.pattern if isinstance(regex, re.Pattern) else regex
    return "^(?:" + re.sub(r"\(\?P<\w+>", "(", text) + ")$"


def _nullable(schema: dict) -> dict:
    return {**schema, "type": [schema["type"], "null"]}


def _object(required: list[str], properties: dict, **extra) -> dict:
    return {"type": "object", "required": required, "properties": properties, **extra}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _page(item: str) -> dict:
    return _object(
        ["items", "total", "limit", "offset"],
        {
            "items": {"type": "array", "items": _ref(item)},
            "total": {"type": "integer", "minimum": 0},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
            "offset": {"type": "integer", "minimum": 0},
        },
    )


def _worker_page(wallet: dict) -> dict:
    """Paged by offset (with the total) or, given after, by wallet (neither total nor offset)."""
    page = _page("WorkerSummary")
    return _object(
        ["items", "limit", "next"],
        {
            **page["properties"],
            "total": {**page["properties"]["total"], "description": "with offset paging"},
            "offset": {**page["properties"]["offset"], "description": "with offset paging"},
            "next": {
                "anyOf": [wallet, {"type": "null"}],
                "description": "pass as after for the next page; null on the last",
            },
        },
    )


def schemas(wallet_format: str) -> dict:
    evm = wallet_format == "evm"
    wallet = {
        "type": "string",
        "pattern": pattern(patterns.EVM_WALLET if evm else patterns.STELLAR_WALLET),
        "description": "A mixed-case address must carry its EIP-55 checksum; answered lower-case"
        if evm
        else "A Stellar account public key (its CRC16 checked)",
    }
    time = {"type": "string", "format": "date-time", "description": "RFC 3339; answered in UTC"}
    server_time = {
        "type": "string",
        "format": "date-time",
        "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
        "description": "The collector's clock as it answered: RFC 3339 UTC, in milliseconds",
    }
    public_key = {
        "type": "string",
        "pattern": "^[A-Za-z0-9+/]{43}=$",
        "description": "The 32-byte Ed25519 key, base64",
    }
    text = {"type": "string", "maxLength": MAX_TEXT}
    window = _object(
        ["startTime", "endTime"],
        {"startTime": time, "endTime": time},
        additionalProperties=False,
    )
    optional_window = {"oneOf": [window, {"type": "null"}]}

    def amount(high: float, description: str) -> dict:
        return {
            "type": ["number", "null"],
            "minimum": 0,
            "maximum": high,
            "description": description,
        }

    container = _object(
        ["containerName"],
        {
            "containerName": {**text, "minLength": 1},
            "port": text,
            **{name: _nullable(text) for name in ("id", "image", "state", "health")},
            "cpuPercent": amount(
                MAX_CONTAINER_CPU_PERCENT,
                "Average CPU use since the agent's previous sample (100 per core)",
            ),
            "memUsageMb": amount(MAX_MEMORY_MB, "Memory in use, MB"),
        },
    )
    # As an agent sends it: the original bash agent names the container "name".
    sent_container = {
        **container,
        "required": [],
        "anyOf": [{"required": ["containerName"]}, {"required": ["name"]}],
        "properties": {
            **container["properties"],
            "name": {**text, "minLength": 1, "description": "The same as containerName"},
        },
    }
    gigabytes = {"type": ["number", "null"], "minimum": 0, "maximum": MAX_GB}
    system = {
        "type": ["object", "null"],
        "description": "The machine, as the worker client shows it; every fact is optional. "
        "Credits are computed from cpuCores, cpuUsagePercent, ramTotalGb, storageTotalGb and "
        "the number of containers.",
        "properties": {
            "cpuCores": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_CPU_CORES},
            "cpuUsagePercent": amount(100, "Of the whole machine"),
            "ramTotalGb": gigabytes,
            "ramUsedGb": gigabytes,
            "storageTotalGb": {**gigabytes, "description": "Of the Docker data root"},
            "storageUsedGb": gigabytes,
        },
    }
    credits = {
        "type": "number",
        "minimum": 0,
        "description": "Credits, exact to the thousandth (a whole number when whole)",
    }
    live = {
        "status": {
            "enum": [HEALTHY, WARNING, DEAD, UNKNOWN],
            "description": "By the age of the last ping or heartbeat: HEALTHY within two "
            "ping_interval, WARNING within three, DEAD after; UNKNOWN when never heard from",
        },
        "lastPing": _nullable({**time, "description": "The last ping or heartbeat's arrival"}),
    }
    summary = {
        "walletAddress": wallet,
        "createdAt": _nullable(time),
        "enrolled": {"type": "boolean"},
        "publicKey": _nullable({**public_key, "description": "The enrolled key, base64"}),
        "enrolledAt": _nullable(time),
        "hostname": _nullable(text),
        "agentVersion": _nullable(text),
        "dockerAvailable": {"type": ["boolean", "null"]},
        "containerCount": {
            **_nullable({"type": "integer", "minimum": 0}),
            "description": "How many containers the machine said it runs (it lists at most 100)",
        },
        "online": {"type": "boolean"},
        "lastHeartbeat": _nullable(time),
        "lastSeen": _nullable(time),
        "tailscaleIp": {"type": ["string", "null"], "pattern": f"^{_IPV4}$"},
        "cpuCores": {"type": ["integer", "null"], "minimum": 1},
        "ramTotalGb": gigabytes,
        "storageTotalGb": gigabytes,
        "credits": credits,
        **live,
    }
    name = {
        "type": "string",
        "pattern": pattern(_NAME),
        "description": "A DNS label of 1 to 20 lower-case characters",
    }
    github = {
        "type": "string",
        "pattern": pattern(_GITHUB),
        "description": "owner/repo or https://github.com/owner/repo; answered as the URL",
    }
    status = {"type": "string", "enum": list(STATUSES)}
    accepted = {
        "accepted": {"const": True},
        "action": {
            "enum": [
                "opened",
                "extended",
                "flushed",
                "reopened",
                "docker_unavailable",
                "not_credited",
            ]
        },
        "credited": {
            "type": "boolean",
            "description": "false for a heartbeat stored as evidence only: late, at a time the "
            "collector was taking heartbeats, or stamped before the worker enrolled",
        },
        "openWindow": {
            "anyOf": [window, {"type": "null"}],
            "description": "null while the agent reports Docker unavailable (not uptime)",
        },
        "containers": {"type": "integer", "minimum": 0},
        "creditsEarned": {
            **credits,
            "description": "What the uptime this heartbeat counted earned (0 when it opened "
            "or restarted a window)",
        },
    }
    point = {
        "timestamp": time,
        "cpuCores": {"type": ["integer", "null"], "minimum": 1},
        "cpuUsagePercent": amount(100, "Of the whole machine"),
        "ramUsedGb": gigabytes,
        "ramTotalGb": gigabytes,
        "storageUsedGb": gigabytes,
        "storageTotalGb": gigabytes,
        "containerCount": {"type": "integer", "minimum": 0},
        "creditsEarned": {**credits, "description": "What the uptime before it earned"},
    }
    branch = {"type": "string", "pattern": pattern(_BRANCH), "default": "main"}
    env_vars = {
        "type": "object",
        "maxProperties": MAX_ENV_VARS,
        "propertyNames": {"pattern": pattern(_ENV_NAME)},
        "additionalProperties": {"type": "string", "maxLength": MAX_ENV_VALUE},
        "description": "Passed to the deployer (deployer_url), never stored; a collector "
        "without a deployer answers 422",
    }
    refused = {"error": {"type": "string"}}
    # A heartbeat not later than the worker's last accepted one.
    stale = {
        **refused,
        "stored": {
            "type": "boolean",
            "description": "true: its time is already counted (a duplicate, or inside a "
            "window); false: it arrived out of order and can never be",
        },
        "lastAccepted": time,
    }
    return {
        "Error": _object(["error"], refused),
        "HeartbeatRefused": _object(
            ["error", "serverTime"],
            {
                **refused,
                "serverTime": server_time,
                "retryAfter": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "With a 429: seconds until this wallet's next heartbeat "
                    "may be stored",
                },
            },
        ),
        "HeartbeatStale": _object(
            ["error", "stored", "lastAccepted", "serverTime"], {**stale, "serverTime": server_time}
        ),
        "Wallet": wallet,
        "Timestamp": time,
        "DeploymentStatus": status,
        "Health": _object(
            ["status"],
            {
                "status": {"type": "string", "enum": ["ok", "error"]},
                "schemaVersion": {"type": "integer"},
                "error": {"type": "string"},
                "serverTime": server_time,
                "maxSkew": {"type": "integer", "description": "seconds a heartbeat may be ahead"},
                "maxBackfill": {"type": "integer", "description": "seconds it may be behind"},
            },
        ),
        "Heartbeat": _object(
            ["walletAddress", "timestamp"],
            {
                "walletAddress": wallet,
                "timestamp": time,
                "containers": {
                    "type": "array",
                    "maxItems": MAX_CONTAINERS,
                    "items": sent_container,
                },
                "containerCount": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": MAX_CONTAINER_COUNT,
                    "description": "How many containers the machine runs, when it lists only "
                    "some (at least as many as listed)",
                },
                "agent": {
                    "type": ["object", "null"],
                    "properties": {
                        "version": _nullable(text),
                        "hostname": _nullable(text),
                        "dockerAvailable": {"type": "boolean"},
                    },
                },
                "system": system,
                "tailscaleIp": {
                    "type": ["string", "null"],
                    "pattern": f"^(?:{_IPV4})?$",
                    "description": "The machine's Tailscale IPv4 address; empty or null "
                    "without Tailscale",
                },
                "hostname": {
                    **_nullable(text),
                    "description": "The original bash agent's place for agent.hostname",
                },
            },
            description="Unknown fields are ignored, so that agents of neighbouring versions "
            "keep working. The X-Tassium-Signature header signs these exact bytes.",
        ),
        "HeartbeatAccepted": _object(
            [*accepted, "serverTime"], {**accepted, "serverTime": server_time}
        ),
        "Ping": _object(
            ["walletAddress", "timestamp"],
            {"walletAddress": wallet, "timestamp": time},
            description="Unknown fields are ignored. The X-Tassium-Signature header signs "
            "these exact bytes; the timestamp must be within max_skew of the collector's clock.",
        ),
        "PingAccepted": _object(
            ["accepted", "lastPing", "serverTime"],
            {"accepted": {"const": True}, "lastPing": time, "serverTime": server_time},
        ),
        "HeartbeatBatch": _object(
            ["heartbeats"],
            {
                "heartbeats": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BATCH,
                    "items": _object(
                        ["body"],
                        {
                            "body": {
                                "type": "string",
                                "description": "The heartbeat's exact JSON text, as signed",
                            },
                            "signature": {
                                "type": ["string", "null"],
                                "description": "The Ed25519 signature of body's UTF-8 bytes",
                            },
                        },
                        additionalProperties=False,
                    ),
                }
            },
            additionalProperties=False,
        ),
        "HeartbeatResults": _object(
            ["results", "serverTime"],
            {
                "results": {
                    "type": "array",
                    "description": "One per heartbeat, in order: what POST /heartbeat would "
                    "answer, with its status",
                    "items": {
                        "oneOf": [
                            _object(["status", *accepted], {"status": {"const": 200}, **accepted}),
                            _object(["status", *stale], {"status": {"const": 409}, **stale}),
                            _object(
                                ["status", "error"],
                                {
                                    "status": {
                                        "type": "integer",
                                        "minimum": 400,
                                        "not": {"const": 409},
                                    },
                                    **refused,
                                },
                            ),
                        ]
                    },
                },
                "serverTime": server_time,
            },
        ),
        "Enrollment": _object(
            ["walletAddress", "publicKey"],
            {
                "walletAddress": wallet,
                "publicKey": public_key,
                "token": _nullable(
                    {"type": "string", "pattern": pattern(patterns.ENROLLMENT_TOKEN)}
                ),
            },
            additionalProperties=False,
        ),
        "ChallengeRequest": _object(
            ["walletAddress", "publicKey"],
            {"walletAddress": wallet, "publicKey": public_key},
            additionalProperties=False,
        ),
        "Challenge": _object(
            [
                "challengeId",
                "walletAddress",
                "walletFormat",
                "publicKey",
                "message",
                "expiresAt",
                "status",
                "signUrl",
            ],
            {
                "challengeId": {"type": "string"},
                "walletAddress": wallet,
                "walletFormat": {"enum": ["evm", "stellar"]},
                "publicKey": {"type": "string"},
                "message": {"type": "string", "description": "What the wallet signs"},
                "expiresAt": time,
                "status": {"enum": ["pending", "used", "expired"]},
                "signUrl": {"type": "string", "description": "The page where the owner signs"},
            },
        ),
        "ChallengeSignature": _object(
            ["signature"],
            {
                "signature": {
                    "type": "string",
                    "description": "0x and 130 hex digits (EVM), or base64 (Stellar)",
                }
            },
            additionalProperties=False,
        ),
        "TokenRequest": _object(
            ["walletAddress"],
            {
                "walletAddress": wallet,
                "ttlSeconds": {
                    "type": ["integer", "null"],
                    "minimum": TOKEN_TTL_MIN,
                    "maximum": TOKEN_TTL_MAX,
                },
            },
            additionalProperties=False,
        ),
        "Token": _object(
            ["token", "walletAddress", "expiresAt"],
            {
                "token": {"type": "string", "pattern": pattern(patterns.ENROLLMENT_TOKEN)},
                "walletAddress": wallet,
                "expiresAt": time,
            },
        ),
        "SignInRequest": _object(
            ["wallet"],
            {"wallet": wallet, "walletAddress": {**wallet, "description": "the same as wallet"}},
            additionalProperties=False,
        ),
        "SignInChallenge": _object(
            ["walletAddress", "message", "nonce", "expiresAt"],
            {
                "walletAddress": wallet,
                "message": {
                    "type": "string",
                    "description": "EIP-4361 (Sign-In with Ethereum) text naming this "
                    "collector's domain; Stellar wallets sign the same text as SEP-53",
                },
                "nonce": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                "expiresAt": time,
            },
        ),
        "SignInSignature": _object(
            ["message", "signature"],
            {
                "message": {"type": "string", "description": "exactly the text issued"},
                "signature": {
                    "type": "string",
                    "description": "0x and 130 hex digits (EVM personal_sign), or base64 "
                    "(Stellar SEP-53)",
                },
            },
            additionalProperties=False,
        ),
        "Session": _object(
            ["token", "walletAddress", "expiresAt"],
            {
                "token": {"type": "string", "pattern": "^tss_[A-Za-z0-9_-]{43}$"},
                "walletAddress": wallet,
                "expiresAt": time,
            },
        ),
        "SessionInfo": _object(
            ["operator"],
            {"operator": {"type": "boolean"}, "walletAddress": wallet, "expiresAt": time},
        ),
        "WorkerSummary": _object(list(summary), summary),
        "Enrolled": _object(
            [*summary, "enrollment"],
            {**summary, "enrollment": {"enum": ["enrolled", "unchanged", "replaced"]}},
        ),
        "Worker": _object(
            [*summary, "openWindow", "containers"],
            {
                **summary,
                "openWindow": optional_window,
                "containers": {"type": "array", "items": container},
            },
        ),
        "Containers": _object(
            ["walletAddress", "containers"],
            {"walletAddress": wallet, "containers": {"type": "array", "items": container}},
        ),
        "WorkerStatus": _object(["walletAddress", *live], {"walletAddress": wallet, **live}),
        "Metrics": _object(
            ["walletAddress", "points", "total"],
            {
                "walletAddress": wallet,
                "points": {
                    "type": "array",
                    "description": "One per accepted heartbeat, oldest first; past the limit, "
                    "every n-th from the newest",
                    "items": _object(list(point), point),
                },
                "total": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "the points in the hours asked, listed or not",
                },
            },
        ),
        **_report_schemas(wallet, time, credits),
        "Uptime": _object(
            ["walletAddress", "timeFrom", "timeTo", "records", "recordCount", "next"]
            + ["openWindow", "totalSeconds", "uptimeFraction"],
            {
                "walletAddress": wallet,
                "timeFrom": time,
                "timeTo": time,
                "records": {
                    "type": "array",
                    "description": "A page of the closed windows in the range, in time order",
                    "items": _object(["timeFrom", "timeTo"], {"timeFrom": time, "timeTo": time}),
                },
                "recordCount": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "every record in the range, on all pages",
                },
                "next": {
                    "anyOf": [time, {"type": "null"}],
                    "description": "pass as after for the next page of records; null on the last",
                },
                "openWindow": optional_window,
                "totalSeconds": {"type": "number", "minimum": 0},
                "uptimeFraction": {"type": "number", "minimum": 0, "maximum": 1},
            },
        ),
        "NewDeployment": _object(
            ["creator"],
            {
                "name": name,
                "appName": name,
                "app_name": name,
                "github": github,
                "githubRepo": github,
                "github_repo": github,
                "creator": wallet,
                "url": {"type": ["string", "null"], "pattern": pattern(_URL)},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 3000},
                "replicas": {"type": "integer", "minimum": 1, "maximum": MAX_REPLICAS},
                "branch": branch,
                "envVars": _nullable(env_vars),
                "env_vars": _nullable(env_vars),
            },
            # One spelling of each of name and github is required.
            allOf=[
                {"anyOf": [{"required": [n]} for n in ("name", "appName", "app_name")]},
                {"anyOf": [{"required": [n]} for n in ("github", "githubRepo", "github_repo")]},
            ],
            additionalProperties=False,
            description="appName/app_name, githubRepo/github_repo and env_vars are the web "
            "UI's names for name, github and envVars. Unknown fields are refused (400). With a "
            "deployer configured the deployment is answered processing, and its build moves it "
            "to success or failed.",
        ),
        "Deployment": _object(
            [
                *("id", "name", "url", "port", "status", "github", "branch", "replicas"),
                *("creator", "errorMessage", "createdAt", "updatedAt"),
            ],
            {
                "id": {"type": "integer"},
                "name": name,
                "url": {"type": "string"},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "status": status,
                "github": {"type": "string"},
                "branch": {"type": "string"},
                "replicas": {"type": "integer", "minimum": 1, "maximum": MAX_REPLICAS},
                "creator": wallet,
                "errorMessage": {
                    "type": ["string", "null"],
                    "description": "Why the deployer failed, in its words",
                },
                "createdAt": time,
                "updatedAt": time,
            },
        ),
        "StatusChange": _object(["status"], {"status": status}, additionalProperties=False),
        "ReplicasChange": _object(
            ["replicas"],
            {"replicas": {"type": "integer", "minimum": 1, "maximum": MAX_REPLICAS}},
            additionalProperties=False,
        ),
        "EnvChange": _object(
            [],
            {
                "envVars": env_vars,
                "env_vars": env_vars,
                "port": {"type": ["integer", "null"], "minimum": 1, "maximum": 65535},
            },
            anyOf=[{"required": ["envVars"]}, {"required": ["env_vars"]}],
            additionalProperties=False,
            description="The deployer restarts the app with these env vars (and port); "
            "env_vars is the web UI's name for envVars.",
        ),
        "NewPayment": _object(
            ["name", "amount", "creator"],
            {
                "name": {"type": "string", "minLength": 1, "maxLength": 255},
                "amount": {
                    "type": "string",
                    "pattern": pattern(_AMOUNT),
                    "description": "A uint256 as a decimal string (at most 2**256-1)",
                },
                "creator": wallet,
            },
            additionalProperties=False,
            description="Unknown fields are refused (400).",
        ),
        "Payment": _object(
            ["id", "name", "amount", "creator", "createdAt"],
            {
                "id": {"type": "integer"},
                "name": {"type": "string"},
                "amount": {"type": "string", "pattern": pattern(_AMOUNT)},
                "creator": wallet,
                "createdAt": time,
                "payoutId": {
                    "type": ["integer", "null"],
                    "description": "the payout it is a share of",
                },
                "txHash": {"type": ["string", "null"]},
            },
        ),
        **_payout_schemas(wallet, time, pattern(_AMOUNT)),
        **{f"{item}Page": _page(item) for item in ("Deployment", "Payment")},
        "PayoutPage": _page("PayoutSummary"),
        "WorkerSummaryPage": _worker_page(wallet),
    }


def _report_schemas(wallet: dict, time: dict, credits: dict) -> dict:
    seconds = {"type": "number", "minimum": 0}
    row = {
        "walletAddress": wallet,
        "uptimeSeconds": seconds,
        "downtimeSeconds": seconds,
        "uptimeFraction": {
            "type": ["number", "null"],
            "minimum": 0,
            "maximum": 1,
            "description": "null when the worker was not known yet in the period",
        },
        "credits": credits,
        "flags": {
            "type": "array",
            "items": {"enum": [capacity.AT_MAXIMUM, capacity.PENDING, reports.CREDITS_OUTLIER]},
            "description": f"{capacity.AT_MAXIMUM}: a capacity fact at the operator's maximum; "
            f"{capacity.PENDING}: reports more than it is credited for, awaiting approval; "
            f"{reports.CREDITS_OUTLIER} (the fleet report only): credits per hour of uptime "
            f"above {reports.OUTLIER_FACTOR} times the fleet's median",
        },
    }
    period = _object(
        ["label", "from", "to"], {"label": {"type": "string"}, "from": time, "to": time}
    )
    facts = {
        "cpuCores": {"type": ["integer", "null"], "minimum": 0},
        "ramGb": {"type": ["number", "null"], "minimum": 0},
        "storageGb": {"type": ["number", "null"], "minimum": 0},
    }
    change = _object(
        ["at", *facts, "reason"],
        {
            "at": time,
            **facts,
            "reason": {
                "enum": [
                    capacity.ENROLLED,
                    capacity.CLAMPED,
                    capacity.DECREASED,
                    capacity.GROWN,
                    capacity.APPROVED,
                    capacity.SET,
                ]
            },
        },
    )
    span = _object(["from", "to"], {"from": time, "to": time})
    downtime = _object(
        ["from", "to", "seconds", "cause"],
        {
            "from": time,
            "to": time,
            "seconds": seconds,
            "cause": {"enum": ["agent_silent", "docker_unavailable", "collector_down"]},
        },
    )
    optional_time = {"anyOf": [time, {"type": "null"}]}
    return {
        "FleetReport": _object(
            ["period", "items", "limit", "next"],
            {
                "period": period,
                "items": {"type": "array", "items": _object(list(row), row)},
                "limit": {"type": "integer", "minimum": 1},
                "next": {
                    "anyOf": [wallet, {"type": "null"}],
                    "description": "pass as after for the next page; null on the last",
                },
            },
        ),
        "WorkerReport": _object(
            [*row, "period", "observedFrom", "observedTo", "uptime", "downtime"]
            + ["uptimeCount", "downtimeCount"]
            + ["capacity", "capacityChanges", "capacityChangeCount"],
            {
                **row,
                "period": period,
                "observedFrom": optional_time,
                "observedTo": optional_time,
                "uptime": {
                    "type": "array",
                    "items": span,
                    "description": "the period's last spans up to the limit, oldest first",
                },
                "uptimeCount": {"type": "integer", "minimum": 0},
                "downtime": {
                    "type": "array",
                    "items": downtime,
                    "description": "the period's last downtimes up to the limit, oldest first",
                },
                "downtimeCount": {"type": "integer", "minimum": 0},
                "capacity": {
                    "anyOf": [_object(list(facts), facts), {"type": "null"}],
                    "description": "what the worker is credited for (null: none fixed yet)",
                },
                "capacityChanges": {
                    "type": "array",
                    "items": change,
                    "description": f"the period's last {reports.CAPACITY_CHANGES_SHOWN} "
                    "changes of the capacity, oldest first",
                },
                "capacityChangeCount": {"type": "integer", "minimum": 0},
            },
        ),
    }


def _payout_schemas(wallet: dict, time: dict, amount_pattern: str) -> dict:
    amount = {"type": "string", "pattern": amount_pattern, "description": "a uint256, decimal"}
    sha256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
    basis = {"enum": list(BASES), "default": DEFAULT_BASIS}
    period = {"type": "string", "description": "as the reports take it, such as 2026-11"}
    payout = {
        "id": {"type": "integer"},
        "period": period,
        "from": time,
        "to": time,
        "basis": basis,
        "budget": amount,
        "inputsSha256": sha256,
        "exportSha256": sha256,
        "txHash": {"type": ["string", "null"]},
        "createdAt": time,
    }
    payment_count = {"paymentCount": {"type": "integer", "minimum": 0}}
    return {
        "NewPayout": _object(
            ["period", "budget"],
            {
                "period": period,
                "budget": amount,
                "basis": basis,
                "txHash": {"type": "string", "pattern": "^(0x)?[0-9a-fA-F]{64}$"},
            },
            additionalProperties=False,
        ),
        "PayoutPlan": _object(
            ["period", "basis", "budget", "shares", "inputs", "inputsSha256", "exportSha256"],
            {
                "period": _object(
                    ["label", "from", "to"],
                    {"label": {"type": "string"}, "from": time, "to": time},
                ),
                "basis": basis,
                "budget": amount,
                "shares": {
                    "type": "array",
                    "items": _object(
                        ["walletAddress", "weight", "amount"],
                        {
                            "walletAddress": wallet,
                            "weight": {"type": "integer", "minimum": 1},
                            "amount": amount,
                        },
                    ),
                },
                "inputs": {
                    "type": "object",
                    "description": "what the split was computed from; its canonical JSON "
                    "(sorted keys, no spaces) hashes to inputsSha256",
                },
                "inputsSha256": sha256,
                "exportSha256": {**sha256, "description": "SHA-256 of the export's CSV bytes"},
            },
        ),
        "PayoutSummary": _object([*payout, "paymentCount"], {**payout, **payment_count}),
        "Payout": _object(
            [*payout, "paymentCount", "payments"],
            {
                **payout,
                **payment_count,
                "payments": {
                    "type": "array",
                    "description": "a page of them by wallet (limit and offset)",
                    "items": _object(
                        ["id", "walletAddress", "amount"],
                        {"id": {"type": "integer"}, "walletAddress": wallet, "amount": amount},
                    ),
                },
            },
        ),
    }
