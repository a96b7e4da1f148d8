"""A stand-in for the original Tassium deployer service, speaking its protocol (snake_case
JSON; answers ``{status, message, url}``), on a real HTTP server. Each test scripts its
answers; every request it received is kept, so a test can see what reached it.

Like a deployer an operator runs, it checks every call's signature (the scheme in
collector/projects/deployer.py's docstring), written here again from that description rather than
imported, so that the collector's signing is checked against the scheme and not against
itself: a missing, wrong or stale signature is a 401, and the call is kept in ``refused``."""

import hashlib
import hmac
import json
import threading
import time

from tests.agent.fake_collector import FakeCollector, Reply, Request
from tests.conftest import free_port

# The secret the fake deployer shares with the collectors of the tests (deployer_secret).
DEPLOYER_SECRET = "deployer-secret-of-the-tests-0123456789abcdef"
# How far a call's timestamp may be from the deployer's clock.
MAX_AGE = 300


def signature_headers(
    secret: str, method: str, target: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The headers signing a call to ``target`` (path and query) with ``secret``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = b"%d\n%s\n%s\n" % (timestamp, method.encode(), target.encode()) + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return {"X-Tassium-Timestamp": str(timestamp), "X-Tassium-Signature": "sha256=" + digest}


def signature_problem(request: Request, secret: str) -> str | None:
    """What is wrong with the signature of ``request``, or None when it is good."""
    headers = {name.lower(): value for name, value in request.headers.items()}
    timestamp, given = headers.get("x-tassium-timestamp"), headers.get("x-tassium-signature")
    if timestamp is None or given is None:
        return "unsigned"
    if (
        not (timestamp.isascii() and timestamp.isdigit())
        or abs(time.time() - int(timestamp)) > MAX_AGE
    ):
        return "stale"
    expected = signature_headers(secret, request.method, request.path, request.body, int(timestamp))
    if not hmac.compare_digest(given.encode(), expected["X-Tassium-Signature"].encode()):
        return "wrong signature"
    return None


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
    ``METHOD path``; anything unscripted is the deployer's 404. Calls not signed with
    ``secret`` are a 401 and kept in ``refused`` as ``(problem, request)``."""

    def __init__(
        self, answers: dict[str, Reply | Gate] | None = None, secret: str = DEPLOYER_SECRET
    ):
        self.answers = dict(answers or {})
        self.secret = secret
        self.refused: list[tuple[str, Request]] = []
        super().__init__(self._answer)
        # Polled every 50 ms rather than the stdlib's 0.5 s: every test waits that out at its end.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def _answer(self, request: Request) -> Reply:
        problem = signature_problem(request, self.secret)
        if problem is not None:
            self.refused.append((problem, request))
            return refuses(401, f"signature: {problem}")
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
        """The bodies of the signed calls to ``METHOD path`` ({} for an empty one)."""
        refused = [id(r) for _, r in self.refused]
        return [r.json() if r.body else {} for r in self.requests
                if (r.method, r.path) == (method, path) and id(r) not in refused]  # fmt: skip
