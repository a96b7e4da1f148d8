"""The original Tassium deployer service, spoken to in its own protocol (snake_case JSON):
``POST /api/v1/deploy/new`` builds and starts an app and answers when it is done,
``PATCH /api/v1/apps/<name>/env`` restarts it with new env vars, ``DELETE /api/v1/apps/<name>``
removes it. Answers are ``{"status": "success"|"error", "message", "url"}``.

Env var values pass through to the deployer and are never stored here."""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    ok: bool
    message: str  # the deployer's own words, or what went wrong reaching it
    url: str | None = None
    status_code: int | None = None  # None: no answer at all (down, timed out)


class Deployer:
    def __init__(self, base_url: str, *, timeout: float, build_timeout: float):
        self.base_url = base_url.rstrip("/") + "/api/v1"
        self.timeout = timeout
        self.build_timeout = build_timeout

    def deploy(self, name: str, repo: str, branch: str, port: int, env_vars: dict) -> Answer:
        body = {
            "app_name": name,
            "github_repo": repo,
            "branch": branch,
            "port": port,
            "env_vars": env_vars,
        }
        # A build counts only when the deployer says so: a 200 from something else at its
        # address (a proxy's page, a wrong path) must not turn into a deployment that succeeded.
        return self._call("POST", "/deploy/new", body, self.build_timeout, says_success=True)

    def update_env(self, name: str, env_vars: dict, port: int | None) -> Answer:
        body = {"env_vars": env_vars, "port": port}
        return self._call("PATCH", f"/apps/{name}/env", body, self.timeout)

    def remove(self, name: str) -> Answer:
        return self._call("DELETE", f"/apps/{name}", None, self.timeout)

    def in_background(self, work: Callable[[], None], name: str) -> None:
        """Run a long call (a build) off the request, so that no request waits for it."""
        threading.Thread(target=work, name=f"tassium-deploy-{name}", daemon=True).start()

    def _call(
        self,
        method: str,
        path: str,
        body: dict | None,
        timeout: float,
        *,
        says_success: bool = False,
    ) -> Answer:
        url = self.base_url + path
        try:
            with httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 10))) as client:
                response = client.request(method, url, json=body)
        except httpx.TimeoutException:
            return Answer(False, f"the deployer did not answer within {timeout:g} s")
        except httpx.HTTPError as exc:
            return Answer(False, f"the deployer is unreachable: {exc}")
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            document = {}
        message = document.get("message")
        message = message[:2000] if isinstance(message, str) and message else None
        url = document.get("url") if isinstance(document.get("url"), str) else None
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
