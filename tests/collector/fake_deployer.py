"""A stand-in for the original Tassium deployer service, speaking its protocol (snake_case
JSON; answers ``{status, message, url}``), on a real HTTP server. Each test scripts its
answers; every request it received is kept, so a test can see what reached it."""

import json
import threading

from tests.agent.fake_collector import FakeCollector, Reply
from tests.conftest import free_port


def deployer_json(code: int = 200, **fields) -> Reply:
    return Reply(code, body=json.dumps(fields).encode())


def builds(url: str = "https://shop.apps.example", delay: float = 0.0) -> Reply:
    return Reply(200, body=json.dumps({"status": "success", "url": url}).encode(), delay=delay)


def refuses(code: int, message: str) -> Reply:
    return deployer_json(code, status="error", message=message)


class Gate:
    """An answer held back until the test opens the gate (or ends): a build still running
    for as long as the test needs it to, without guessing a delay."""

    def __init__(self, reply: Reply):
        self.reply = reply
        self.reached = threading.Event()  # a request is waiting at the gate
        self.opened = threading.Event()

    def open(self) -> None:
        self.opened.set()


def hangs() -> Gate:
    """A deployer that never answers: held until the test ends."""
    return Gate(Reply(503, body=b"{}"))


def down() -> str:
    """The address of a deployer that is down: a closed port."""
    return f"http://127.0.0.1:{free_port()}"


class FakeDeployer(FakeCollector):
    """``FakeDeployer({"POST /api/v1/deploy/new": builds(delay=1)})``: an answer per
    ``METHOD path``; anything unscripted is the deployer's 404."""

    def __init__(self, answers: dict[str, Reply | Gate] | None = None):
        self.answers = dict(answers or {})
        super().__init__(self._answer)
        # Polled every 50 ms rather than the stdlib's 0.5 s: every test waits that out at its end.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def _answer(self, request) -> Reply:
        answer = self.answers.get(f"{request.method} {request.path}", refuses(404, "App not found"))
        if isinstance(answer, Gate):
            answer.reached.set()
            answer.opened.wait()
            return answer.reply
        return answer

    def __exit__(self, *exc) -> None:
        for answer in self.answers.values():
            if isinstance(answer, Gate):
                answer.open()
        super().__exit__(*exc)

    def received(self, method: str, path: str) -> list[dict]:
        return [r.json() if r.body else {} for r in self.requests
                if (r.method, r.path) == (method, path)]  # fmt: skip
