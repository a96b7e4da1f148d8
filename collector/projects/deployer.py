"""The original Tassium deployer service, spoken to in its own protocol (snake_case JSON):
``POST /api/v1/deploy/new`` builds and starts an app and answers when it is done,
``PATCH /api/v1/apps/<name>/env`` restarts it with new env vars, ``DELETE /api/v1/apps/<name>``
removes it. Answers are ``{"status": "success"|"error", "message", "url"}``.

Every call is signed with ``deployer_secret``, a secret the operator shares with the
deployer, so that the deployer can refuse whoever else reaches it. Two headers:

    X-Tassium-Timestamp: <unix seconds when the call was made>
    X-Tassium-Signature: sha256=<hex of HMAC-SHA256(secret, message)>

where ``message`` is the bytes of ``f"{timestamp}\\n{METHOD}\\n{path}\\n"`` (UTF-8; ``path``
is the request target exactly as sent: the deployer URL's own path prefix included, and the
query string when there is one) followed by the exact request body bytes (a JSON document
sent as ``application/json``; empty for a ``DELETE``). A deployer checks it by computing the
same HMAC over what it received, comparing in constant time (``hmac.compare_digest``), and
refusing a missing or wrong signature, or a timestamp more than 300 s from its own
clock (a replayed call), with a 401.

Only repositories the operator allows (``deployer_repositories``, see
``repository_allowed``) are sent. Env var values pass through to the deployer and are never
stored, logged or echoed here: whatever the deployer (or a failed connection) says comes
back with each value of that call replaced (``redact``)."""

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Tassium-Timestamp"
SIGNATURE_HEADER = "X-Tassium-Signature"
REDACTED = "[redacted]"
# The deployer's message is stored and shown: a build's whole output is not.
MAX_MESSAGE = 2000


def sign(secret: str, method: str, path: str, body: bytes, timestamp: int) -> dict[str, str]:
    """The headers that sign one call (the scheme is in this module's docstring)."""
    message = f"{timestamp}\n{method}\n{path}\n".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: f"sha256={digest}"}


def redact(text: str, values: Iterable[str]) -> str:
    """``text`` with every one of ``values`` replaced by ``[redacted]``, however short: a
    failed build's output may echo an env var, and what we keep of it is shown to anyone.
    Also each value as JSON writes it, since a deployer may echo the body it was sent."""
    needles = set()
    for value in values:
        if value:
            needles |= {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    if not needles:
        return text
    # One pass, longest first: a value that is part of another goes with it, and the
    # replacement itself is never searched again (a value "e" would mangle "[redacted]").
    pattern = "|".join(re.escape(n) for n in sorted(needles, key=len, reverse=True))
    return re.sub(pattern, REDACTED, text)


def repository_allowed(github: str, scopes: Iterable[str]) -> bool:
    """Whether the repository ``github`` (``https://host/owner/repo``) is covered by one of
    ``scopes`` (``host``, ``host/owner`` or ``host/owner/repo``). Compared without regard to
    case, as GitHub names them; part by part, so ``github.com/acme`` does not cover
    ``github.com/acme-evil``."""
    split = urlsplit(github)
    wanted = [split.hostname or "", *split.path.strip("/").split("/")]
    if len(wanted) != 3 or not all(wanted):
        return False  # not the shape deployments are stored in: never sent
    wanted = [part.lower() for part in wanted]
    for scope in scopes:
        parts = scope.lower().split("/")
        if len(parts) == 3:
            parts[2] = parts[2].removesuffix(".git")
        if wanted[: len(parts)] == parts:
            return True
    return False


@dataclass(frozen=True)
class Answer:
    ok: bool
    message: str  # the deployer's own words (redacted), or what went wrong reaching it
    url: str | None = None
    status_code: int | None = None  # None: no answer at all (down, timed out, never sent)


class Deployer:
    def __init__(
        self,
        base_url: str,
        *,
        secret: str,
        repositories: tuple[str, ...],
        timeout: float,
        build_timeout: float,
    ):
        if not secret:
            # An unsigned call builds whatever anyone asks: never made.
            raise ValueError("deployer_url needs a deployer_secret, which signs every call")
        self.base_url = base_url.rstrip("/") + "/api/v1"
        self.secret = secret
        self.repositories = tuple(repositories)
        self.timeout = timeout
        self.build_timeout = build_timeout

    def refusal(self, github: str) -> str | None:
        """Why ``github`` is not sent to this deployer, or None when it may be."""
        if repository_allowed(github, self.repositories):
            return None
        shown = github.removeprefix("https://")
        if not self.repositories:
            return (
                "this collector's deployer builds no repositories until the operator lists "
                f"some (deployer_repositories); {shown} is not among them"
            )
        return (
            "this collector's deployer builds only repositories under "
            f"{', '.join(self.repositories)}; {shown} is not among them (deployer_repositories)"
        )

    def deploy(self, name: str, github: str, branch: str, port: int, env_vars: dict) -> Answer:
        """Build ``github`` (a stored ``https://github.com/owner/repo``), if it is still
        allowed: a deployment stored before the operator narrowed the list is not sent."""
        if not repository_allowed(github, self.repositories):
            shown = github.removeprefix("https://")
            return Answer(
                False,
                f"not sent to the deployer: {shown} is not among the repositories this "
                "collector's deployer builds (deployer_repositories)",
            )
        body = {
            "app_name": name,
            "github_repo": urlsplit(github).path.strip("/"),  # owner/repo, as the protocol has it
            "branch": branch,
            "port": port,
            "env_vars": env_vars,
        }
        # A build counts only when the deployer says so: a 200 from something else at its
        # address (a proxy's page, a wrong path) must not turn into a deployment that succeeded.
        return self._call(
            "POST", "/deploy/new", body, self.build_timeout, env_vars.values(), says_success=True
        )

    def update_env(self, name: str, env_vars: dict, port: int | None) -> Answer:
        body = {"env_vars": env_vars, "port": port}
        return self._call("PATCH", f"/apps/{name}/env", body, self.timeout, env_vars.values())

    def remove(self, name: str) -> Answer:
        return self._call("DELETE", f"/apps/{name}", None, self.timeout, ())

    def in_background(self, work: Callable[[], None], name: str) -> None:
        """Run a long call (a build) off the request, so that no request waits for it."""
        threading.Thread(target=work, name=f"tassium-deploy-{name}", daemon=True).start()

    def _call(
        self,
        method: str,
        path: str,
        body: dict | None,
        timeout: float,
        secrets: Collection[str],
        *,
        says_success: bool = False,
    ) -> Answer:
        # Serialized once: the signature covers these very bytes.
        content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            with httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 10))) as client:
                request = client.build_request(
                    method, self.base_url + path, content=content, headers=headers
                )
                target = request.url.raw_path.decode("ascii")
                request.headers.update(sign(self.secret, method, target, content, int(time.time())))
                response = client.send(request)
        except httpx.TimeoutException:
            return Answer(False, f"the deployer did not answer within {timeout:g} s")
        except httpx.HTTPError as exc:
            return Answer(False, f"the deployer is unreachable: {redact(str(exc), secrets)}")
        return _answer(response, secrets, says_success)


def _answer(response: httpx.Response, secrets: Collection[str], says_success: bool) -> Answer:
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        document = {}
    message = document.get("message")
    # Redacted whole, then cut: a cut first could leave the start of a value behind.
    message = redact(message, secrets)[:MAX_MESSAGE] if isinstance(message, str) else None
    url = document.get("url") if isinstance(document.get("url"), str) else None
    if url is not None and redact(url, secrets) != url:
        # An address is not a message to redact: one that repeats a value is not taken.
        log.warning("the deployer's answer names a url repeating an env var value: not taken")
        url = None
    status = document.get("status")
    if response.is_success and (status == "success" if says_success else status != "error"):
        return Answer(True, message or "ok", url, response.status_code)
    if response.is_success and status != "error":  # not the deployer's answer at all
        message = f"the deployer answered HTTP {response.status_code} without status success"
    return Answer(
        False,
        message or f"the deployer answered HTTP {response.status_code}",
        None,
        response.status_code,
    )
