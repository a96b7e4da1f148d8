"""Installing a worker: the setup script rendered for one wallet (``/setup.sh``, and the
plan's ``/api/setup``), and the agent wheel it installs (``/packages/<wheel>``).

Every value written into the script is validated first and then shell-quoted, so nothing a
caller sends can become shell code. A refusal is itself a tiny sh script that prints the
reason and exits 1, so ``curl -s … | sh`` (or ``| sudo bash``) shows the owner what is wrong.
"""

import re
import shlex

from flask import Blueprint, Response, request

from collector import assets, wheel
from collector.api import ApiError, public_url, settings, wallet
from collector.enrollment import is_enrolled, token_is_usable, validate_token
from protocol import patterns
from protocol.times import utcnow

bp = Blueprint("setup", __name__)

# The line that ends the block of values the collector fills in.
_VALUES_END = "# (end of the values the collector fills in)"
# The line that ends the here-document holding the bash installer: in a value, it would end
# the installer early and hand the rest of the script to the sh prologue as commands.
INSTALLER_END = "TASSIUM_SETUP_BASH"
_QUERY_FIELDS = ("wallet", "token")
# The script checks its values (also given as options) with these variables: served, it
# carries the collector's own patterns; the repository's copy holds the same (a test says so).
SCRIPT_PATTERNS = {
    "COLLECTOR_URL_RE": patterns.COLLECTOR_URL,
    "EVM_WALLET_RE": patterns.EVM_WALLET,
    "STELLAR_WALLET_RE": patterns.STELLAR_WALLET,
    "TOKEN_RE": patterns.ENROLLMENT_TOKEN,
    "PACKAGE_RE": patterns.PIP_REQUIREMENT,
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


def refusal(status: int, message: str) -> Response:
    # printf, not echo: dash's echo would read backslashes in the message as escapes.
    line = shlex.quote("tassium setup: error: " + message)
    body = f"#!/bin/sh\nprintf '%s\\n' {line} >&2\nexit 1\n"
    return _script(body, status)


def _script(body: str, status: int = 200) -> Response:
    response = Response(body, status, mimetype="text/x-shellscript")
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


@bp.get("/setup.sh")
@bp.get("/api/setup")
def setup_script():
    config = settings()
    try:
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
        url = public_url()
    except ApiError as exc:
        return refusal(exc.status, exc.message)

    values = {
        "COLLECTOR_URL": url,
        "WALLET": address,
        "WALLET_FORMAT": config.wallet_format,
        "TOKEN": token,
        "WHEEL_URL": "" if config.agent_package else f"{url}/packages/{wheel.current().filename}",
        "PACKAGE": config.agent_package or "",
        "AGENT_UNIT": assets.read(assets.AGENT_UNIT).rstrip("\n"),
        **SCRIPT_PATTERNS,
    }
    return _script(render(assets.read(assets.SETUP_SCRIPT), values))


@bp.get("/packages/<name>")
def package(name: str):
    built = wheel.current()
    if name != built.filename:
        raise ApiError(404, f"no package {name!r}; this collector serves {built.filename}")
    response = Response(built.content, mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = f"attachment; filename={built.filename}"
    response.headers["ETag"] = f'"{built.sha256}"'
    return response.make_conditional(request)
