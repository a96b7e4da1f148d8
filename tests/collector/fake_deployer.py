"""A stand-in for the original Tassium deployer service, speaking its protocol (snake_case
JSON; answers ``{status, message, url}``), on a real HTTP server. Each test scripts its
answers; every request it received is kept, so a test can see what reached it."""

import json

from tests.agent.fake_collector import FakeCollector, Reply

# Longer than any test waits: a deployer that never answers.
FOREVER = 120.0


def deployer_json(code: int = 200, **fields) -> Reply:
    return Reply(code, body=json.dumps(fields).encode())


def builds(url: str = "https://shop.apps.example", delay: float = 0.0) -> Reply:
    return Reply(200, body=json.dumps({"status": "success", "url": url}).encode(), delay=delay)


def refuses(code: int, message: str) -> Reply:
    return deployer_json(code, status="error", message=message)


HANGS = Reply(200, delay=FOREVER)


class FakeDeployer(FakeCollector):
    """``FakeDeployer({"POST /api/v1/deploy/new": builds(delay=1)})``: an answer per
    ``METHOD path``; anything unscripted is the deployer's 404."""

    def __init__(self, answers: dict[str, Reply] | None = None):
        self.answers = dict(answers or {})
        super().__init__(self._answer)

    def _answer(self, request) -> Reply:
        return self.answers.get(f"{request.method} {request.path}", refuses(404, "App not found"))

    def received(self, method: str, path: str) -> list[dict]:
        return [r.json() if r.body else {} for r in self.requests
                if (r.method, r.path) == (method, path)]  # fmt: skip
