"""Installing a worker: the setup script rendered for one wallet (``/setup.sh``, and the
plan's ``/api/setup``), and the agent wheel and dependency lock it installs
(``/packages/<name>``).

Every value written into the script is validated first and then shell-quoted, so nothing a
caller sends can become shell code. A refusal (a bad request, the database down, a failure of
the collector's own) is itself a tiny sh script that prints the reason and exits 1, answered
200 with the status it stands for in ``X-Tassium-Refused``: so ``curl -fsSL … | sh``,
``curl -s … | sh`` and ``| sudo bash`` all show the owner what is wrong and fail.

The script installs as root exactly what this collector serves: it carries the sha256 of the
wheel and of the lock, and fetches them from ``public_url`` over https (plain http only to
this machine's own loopback, or when the operator says ``insecure_http_installs``).
"""

import logging
import re
import shlex
from urllib.parse import urlsplit

from flask import Blueprint, Response, request

from collector.addresses import is_loopback
from collector.config import CollectorConfig
from collector.errors import ApiError
from collector.install import assets, wheel
from collector.store import db
from collector.uptime.enrollment import is_enrolled, token_is_usable, validate_token
from collector.web.api import public_url, settings, wallet
from collector.web.database_state import RETRY_AFTER, database_failed
from collector.web.schema import Parameter, Reply, operation, path_parameter, query, wallet_ref
from protocol import patterns
from protocol.times import utcnow

log = logging.getLogger(__name__)

bp = Blueprint("setup", __name__)

# The line that ends the block of values the collector fills in.
_VALUES_END = "# (end of the values the collector fills in)"
# The line that ends the here-document holding the bash installer: in a value, it would end
# the installer early and hand the rest of the script to the sh prologue as commands.
INSTALLER_END = "TASSIUM_SETUP_BASH"
_QUERY_FIELDS = ("wallet", "token")
# A sha256 as sha256sum prints it.
SHA256 = "[0-9a-f]{64}"
# The script checks its values (also given as options) with these variables: served, it
# carries the collector's own patterns; the repository's copy holds the same (a test says so).
SCRIPT_PATTERNS = {
    "COLLECTOR_URL_RE": patterns.COLLECTOR_URL,
    "EVM_WALLET_RE": patterns.EVM_WALLET,
    "STELLAR_WALLET_RE": patterns.STELLAR_WALLET,
    "TOKEN_RE": patterns.ENROLLMENT_TOKEN,
    "PACKAGE_RE": patterns.PIP_REQUIREMENT,
    "SHA256_RE": SHA256,
}


def render(template: str, values: dict[str, str]) -> str:
    """Fill in ``NAME=''`` lines of the script's values block with shell-quoted values."""
    head, end, rest = template.partition(_VALUES_END)
    if not end:
        raise ValueError("the setup script has no block of values to fill in")
    for name, value in values.items():
        if INSTALLER_END in value.split("\n"):
            raise ValueError(f"{name} holds a line that would end the installer")
        head, count = re.subn(
            rf"^{name}=.*$",
            lambda _, v=value, n=name: f"{n}={shlex.quote(v)}",
            head,
            count=1,
            flags=re.M,
        )
        if count != 1:
            raise ValueError(f"the setup script has no {name}= line to fill in")
    return head + end + rest


# curl -f, in the owner's `curl -fsSL … | sh`, prints nothing of an answer of 400 or more,
# and sh, reading an empty script, exits 0: the owner would see "curl: (22) … error: 400" and
# a line that succeeded. So a refusal is answered 200, whoever asks, and the status it stands
# for goes in this header, for the clients that are not a shell.
REFUSED = "X-Tassium-Refused"


def refusal(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A script that prints why and exits 1, answered 200 with ``status`` in REFUSED."""
    # printf, not echo: dash's echo would read backslashes in the message as escapes.
    line = shlex.quote("tassium setup: error: " + message)
    body = f"#!/bin/sh\nprintf '%s\\n' {line} >&2\nexit 1\n"
    response = _script(body)
    response.headers.update(headers or {})
    response.headers[REFUSED] = str(status)
    return response


def _script(body: str) -> Response:
    response = Response(body, mimetype="text/x-shellscript")
    # A rendered script may hold an enrollment token: no cache may keep it.
    response.headers["Cache-Control"] = "no-store"
    return response


def _query() -> dict[str, str]:
    unknown = sorted(set(request.args) - set(_QUERY_FIELDS))
    if unknown:
        raise ApiError(400, f"unknown parameter {unknown[0]!r}; accepted: wallet, token")
    for name in _QUERY_FIELDS:
        if len(request.args.getlist(name)) > 1:
            raise ApiError(400, f"{name} is given more than once")
    return {name: request.args[name] for name in _QUERY_FIELDS if name in request.args}


# The script, or a refusal that is one too; no cache may keep it (it may hold a token).
_SCRIPT = {
    "content": {"text/x-shellscript": {"schema": {"type": "string"}}},
    "headers": {
        "Cache-Control": {"required": True, "schema": {"const": "no-store"}},
        REFUSED: {
            "description": "Only on a refusal: the status it stands for (400 a bad request, "
            "503 the database unavailable, 500 a failure of the collector's own)",
            "schema": {"type": "string", "enum": ["400", "500", "503"]},
        },
        "Retry-After": {
            "description": f"With {REFUSED} 503: seconds",
            "schema": {"type": "string"},
        },
    },
}
_REFUSALS = (
    "A refusal is answered 200 too, so that `curl -fsSL … | sh` shows it (curl -f prints "
    "nothing of a 4xx or 5xx, and sh then runs an empty script and succeeds): a script that "
    f"prints `tassium setup: error: <why>` on stderr and exits 1, with `{REFUSED}` giving the "
    "status it stands for."
)


def _setup_operation(summary: str) -> dict:
    """The operation of both names of the script."""
    return {
        "summary": summary,
        "description": _REFUSALS,
        "parameters": (
            Parameter("wallet", "query", wallet_ref(), "the worker owner's wallet", required=True),
            query("token", {"type": "string"}, "an enrollment token for that wallet"),
        ),
        "replies": {
            200: Reply(
                f"The script, ready for `| sh`; or, with `{REFUSED}`, a script that prints why "
                "and exits 1",
                **_SCRIPT,
            ),
        },
    }


@bp.get("/setup.sh")
@operation(**_setup_operation("The worker install script for a wallet"))
def setup_script() -> Response:
    return _setup_script()


@bp.get("/api/setup")
@operation(
    **_setup_operation("The worker install script for a wallet (the plan's name for /setup.sh)")
)
def api_setup() -> Response:
    return _setup_script()


def _setup_script() -> Response:
    # Answered here, not by the pipeline's error_answer: its JSON would reach `| sh` as an
    # empty script (curl -f) or as a command not found. The steps before the view refuse
    # nothing the owner's GET sends: the rate limits count writes only, and curl sends no body.
    try:
        return _script(render(assets.read(assets.SETUP_SCRIPT), _values(settings())))
    except ApiError as exc:
        return refusal(exc.status, exc.message, exc.headers)
    except db.DATABASE_DOWN as exc:
        database_failed(exc)
        return refusal(
            503,
            "the collector's database is unavailable: run this line again in a minute",
            {"Retry-After": str(RETRY_AFTER)},
        )
    except Exception as exc:
        log.error("Exception on %s [%s]", request.path, request.method, exc_info=exc)
        return refusal(
            500,
            "the collector could not make the install script (its log says why): tell its operator",
        )


def _values(config: CollectorConfig) -> dict[str, str]:
    """The script's values for this request, each validated; ApiError when one is refused."""
    query = _query()
    if not query.get("wallet"):
        raise ApiError(400, "wallet is required: /setup.sh?wallet=<your wallet address>")
    address = wallet(query["wallet"], "wallet")
    token = validate_token(query["token"]) if query.get("token") else ""
    # An enrolled worker re-runs the same line to upgrade: its key is enrolled already, so
    # the token (used by now) is not needed and is not checked.
    if not is_enrolled(address):
        if token and not token_is_usable(token, address, utcnow()):
            raise ApiError(400, "token is unknown, expired, used or for another wallet")
        if not token and config.enrollment_policy == "token":
            raise ApiError(
                400, "this collector enrolls workers with a token: ask the operator for one"
            )
    url = install_url(config)
    return {
        "COLLECTOR_URL": url,
        "WALLET": address,
        "WALLET_FORMAT": config.wallet_format,
        "TOKEN": token,
        **(_unpinned() if config.agent_package else _pinned(url)),
        "PACKAGE": config.agent_package or "",
        "AGENT_UNIT": assets.read(assets.AGENT_UNIT).rstrip("\n"),
        **SCRIPT_PATTERNS,
    }


def install_url(config: CollectorConfig) -> str:
    """Where the script reaches this collector, and fetches what it installs as root from:
    ``public_url``, or the request's own address when that is loopback (a worker on the
    collector's machine). Over the network only https, unless ``insecure_http_installs``: the
    script's hashes are only as good as the script, which a hop on plain http could rewrite."""
    url = public_url()  # refuses a request's own address unless it is loopback
    parts = urlsplit(url)
    local = is_loopback(parts.hostname or "")
    if parts.scheme != "https" and not local and not config.insecure_http_installs:
        raise ApiError(
            400,
            f"this collector's public_url {url} is plain http, which anyone on the way could"
            " change: the operator must make it https (or set insecure_http_installs: true)",
        )
    return url


def _pinned(url: str) -> dict[str, str]:
    built, lock = wheel.current(), wheel.lock()
    return {
        "WHEEL_URL": f"{url}/packages/{built.filename}",
        "WHEEL_SHA256": built.sha256,
        "LOCK_URL": f"{url}/packages/{lock.filename}",
        "LOCK_SHA256": lock.sha256,
    }


def _unpinned() -> dict[str, str]:
    # The operator's agent_package is installed as pip finds it: nothing to pin it by.
    return dict.fromkeys(("WHEEL_URL", "WHEEL_SHA256", "LOCK_URL", "LOCK_SHA256"), "")


@bp.get("/packages/<name>")
@operation(
    summary="The wheel of the collector's own code, which the install script installs",
    parameters=(path_parameter("name", {"type": "string", "minLength": 1}),),
    replies={
        200: Reply("The wheel (ETag: its sha256)", content={"application/octet-stream": {}}),
        304: Reply("Not modified (If-None-Match)"),
    },
    errors=(404, 405),
)
def package(name: str) -> Response:
    found = wheel.served(name)
    if found is None:
        names = f"{wheel.current().filename} and {wheel.LOCK_FILENAME}"
        raise ApiError(404, f"no package {name!r}; this collector serves {names}")
    response = Response(found.content, mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = f"attachment; filename={found.filename}"
    response.headers["ETag"] = f'"{found.sha256}"'
    return response.make_conditional(request)
