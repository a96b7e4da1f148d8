"""The JSON Schemas of the OpenAPI document (``collector/openapi.py``): request and response
bodies. The patterns are the ones the routes check, taken from where they are defined."""

import re

from collector.api import MAX_PAGE
from collector.config import TOKEN_TTL_MAX, TOKEN_TTL_MIN
from collector.deployments import _GITHUB, _NAME, _URL, MAX_REPLICAS, STATUSES
from collector.heartbeats import MAX_BATCH
from collector.payments import _AMOUNT
from protocol import patterns
from protocol.heartbeat import MAX_CONTAINERS, MAX_TEXT


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
    container = _object(
        ["containerName"],
        {
            "containerName": {**text, "minLength": 1},
            "port": text,
            **{name: _nullable(text) for name in ("id", "image", "state", "health")},
        },
    )
    summary = {
        "walletAddress": wallet,
        "createdAt": _nullable(time),
        "enrolled": {"type": "boolean"},
        "publicKey": _nullable({**public_key, "description": "The enrolled key, base64"}),
        "enrolledAt": _nullable(time),
        "hostname": _nullable(text),
        "agentVersion": _nullable(text),
        "dockerAvailable": {"type": ["boolean", "null"]},
        "online": {"type": "boolean"},
        "lastHeartbeat": _nullable(time),
        "lastSeen": _nullable(time),
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
        "action": {"enum": ["opened", "extended", "flushed", "reopened"]},
        "openWindow": window,
        "containers": {"type": "integer", "minimum": 0},
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
            ["error", "serverTime"], {**refused, "serverTime": server_time}
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
                "containers": {"type": "array", "maxItems": MAX_CONTAINERS, "items": container},
                "agent": {
                    "type": ["object", "null"],
                    "properties": {
                        "version": _nullable(text),
                        "hostname": _nullable(text),
                        "dockerAvailable": {"type": "boolean"},
                    },
                },
            },
            description="Unknown fields are ignored, so that agents of neighbouring versions "
            "keep working. The X-Tassium-Signature header signs these exact bytes.",
        ),
        "HeartbeatAccepted": _object(
            ["accepted", "action", "openWindow", "containers", "serverTime"],
            {**accepted, "serverTime": server_time},
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
        "Uptime": _object(
            ["walletAddress", "timeFrom", "timeTo", "records", "openWindow"]
            + ["totalSeconds", "uptimeFraction"],
            {
                "walletAddress": wallet,
                "timeFrom": time,
                "timeTo": time,
                "records": {
                    "type": "array",
                    "items": _object(["timeFrom", "timeTo"], {"timeFrom": time, "timeTo": time}),
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
            },
            # One spelling of each of name and github is required.
            allOf=[
                {"anyOf": [{"required": [n]} for n in ("name", "appName", "app_name")]},
                {"anyOf": [{"required": [n]} for n in ("github", "githubRepo", "github_repo")]},
            ],
            additionalProperties=False,
            description="appName/app_name and githubRepo/github_repo are the web UI's names "
            "for name and github. Unknown fields are refused (400).",
        ),
        "Deployment": _object(
            ["id", "name", "url", "port", "status", "github", "replicas", "creator", "createdAt"],
            {
                "id": {"type": "integer"},
                "name": name,
                "url": {"type": "string"},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "status": status,
                "github": {"type": "string"},
                "replicas": {"type": "integer", "minimum": 1, "maximum": MAX_REPLICAS},
                "creator": wallet,
                "createdAt": time,
            },
        ),
        "StatusChange": _object(["status"], {"status": status}, additionalProperties=False),
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
            },
        ),
        **{f"{item}Page": _page(item) for item in ("WorkerSummary", "Deployment", "Payment")},
    }
