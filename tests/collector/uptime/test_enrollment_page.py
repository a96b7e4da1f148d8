"""The owner's page for an enrollment challenge, ``/enroll/<id>``, through the Flask test
client on both databases: what it shows of each state, escaped, under its own nonce CSP.
Its script, signing with a wallet in Chromium, is test_enrollment_browser.py's."""

import json
import re
from datetime import timedelta
from urllib.parse import urljoin

import pytest

from collector.store.models import EnrollmentChallenge
from collector.uptime.enrollment import CHALLENGE_TTL, create_challenge
from protocol.times import utcnow
from tests.factories import FakeWorker

API_TOKEN = "c" * 32
UNKNOWN = "A" * 43


def escape(text: str) -> str:
    """As Jinja's autoescape writes ``text`` into a page."""
    for char, entity in (
        ("&", "&amp;"),
        ("<", "&lt;"),
        (">", "&gt;"),
        ('"', "&#34;"),
        ("'", "&#39;"),
    ):
        text = text.replace(char, entity)
    return text


def challenged(client, worker: FakeWorker | None = None) -> tuple[FakeWorker, dict]:
    worker = worker or FakeWorker()
    answer = worker.challenge(client)
    assert answer.status_code == 201
    return worker, answer.json


def page(client, challenge_id: str):
    response = client.get(f"/enroll/{challenge_id}")
    assert response.content_type == "text/html; charset=utf-8"
    return response, response.get_data(as_text=True)


def script_data(text: str) -> dict:
    found = re.search(r'<script type="application/json" id="challenge-data">(.*?)</script>', text)
    assert found, "the page carries no data for its script"
    return json.loads(found.group(1))


def test_the_page_of_a_pending_challenge_shows_what_is_signed_and_a_button(client):
    worker, challenge = challenged(client)
    response, text = page(client, challenge["challengeId"])
    assert response.status_code == 200
    for part in (worker.wallet, worker.public_key, "http://localhost"):
        assert part in text
    assert challenge["expiresAt"][:19].replace("T", " ") + " UTC" in text
    assert f'<pre id="message">{escape(challenge["message"])}</pre>' in text
    assert "in 15 minutes" in text
    assert text.count("<button") == 1 and "Sign with your wallet</button>" in text
    assert script_data(text) == {
        "wallet": worker.wallet,
        "walletFormat": "evm",
        "message": challenge["message"],
        "submitUrl": f"../workers/enroll/challenge/{challenge['challengeId']}",
    }


def test_the_script_sends_the_signature_to_the_challenges_route(client, dbconn):
    worker, challenge = challenged(client)
    page_url = f"http://localhost/enroll/{challenge['challengeId']}"
    submit = urljoin(page_url, script_data(page(client, challenge["challengeId"])[1])["submitUrl"])
    assert submit == f"http://localhost/workers/enroll/challenge/{challenge['challengeId']}"
    signed = client.post(submit, json={"signature": worker.owner.sign(challenge["message"])})
    assert (signed.status_code, signed.json["enrollment"]) == (201, "enrolled")


def test_the_page_runs_only_its_own_script_and_style_under_a_fresh_nonce(client):
    _, challenge = challenged(client)
    nonces = set()
    for _ in range(2):
        response, text = page(client, challenge["challengeId"])
        csp = response.headers["Content-Security-Policy"]
        nonce = re.search(r"script-src 'nonce-([\w-]+)'", csp).group(1)
        assert f"style-src 'nonce-{nonce}'" in csp
        for part in ("default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'"):
            assert part in csp
        # Every script that runs and every style carries it; the JSON data block never runs.
        running = re.findall(r"<script(?! type=\"application/json\")([^>]*)>", text)
        assert running == [f' nonce="{nonce}"']
        assert re.findall(r"<style([^>]*)>", text) == [f' nonce="{nonce}"']
        # Nothing loaded from elsewhere: no src at all, no href but the empty icon.
        assert " src=" not in text
        assert re.findall(r'href="([^"]*)"', text) == ["data:,"]
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        nonces.add(nonce)
    assert len(nonces) == 2


def test_the_page_escapes_the_challenge_in_html_and_in_its_script_data(client, dbconn):
    worker = FakeWorker()
    hostile = '</pre></script><script>alert("x")</script> & <b>'
    EnrollmentChallenge.create(
        id=UNKNOWN,
        wallet_address=worker.wallet,
        public_key=worker.public_key,
        message=f"Enroll {hostile}",
        created_at=utcnow(),
        expires_at=utcnow() + CHALLENGE_TTL,
    )
    _, text = page(client, UNKNOWN)
    assert hostile not in text and "<b>" not in text
    assert str(escape(hostile)) in text  # as Jinja escapes: " is &#34;
    assert text.count("</script>") == 2  # the data block's and the script's own
    assert script_data(text)["message"] == f"Enroll {hostile}"


def test_the_page_warns_that_signing_moves_the_wallet_from_its_other_machine(client):
    worker = FakeWorker()
    assert worker.enroll(client).status_code == 201
    _, challenge = challenged(client, worker.another_machine())
    _, text = page(client, challenge["challengeId"])
    assert "earns uptime on another machine now" in text
    assert worker.public_key in text


def test_the_page_of_a_used_challenge_says_so_without_a_button(client):
    worker, challenge = challenged(client)
    assert worker.sign_challenge(client, challenge).status_code == 201
    response, text = page(client, challenge["challengeId"])
    assert response.status_code == 200
    assert 'data-status="used"' in text and "This link was used" in text
    assert "tassium-agent enroll" in text
    assert "<button" not in text and "challenge-data" not in text
    assert worker.wallet in text


def test_the_page_of_an_expired_challenge_says_so_without_a_button(client, dbconn):
    worker = FakeWorker()
    then = utcnow() - CHALLENGE_TTL - timedelta(minutes=1)
    old = create_challenge("http://localhost", worker.wallet, worker.public_key, then)
    response, text = page(client, old.id)
    assert response.status_code == 200
    assert 'data-status="expired"' in text and "expired at" in text
    assert "Run the install line or <code>tassium-agent enroll</code> again" in text
    assert f"good for {CHALLENGE_TTL // timedelta(minutes=1)} minutes" in " ".join(text.split())
    assert "<button" not in text and "<script" not in text


def test_an_unknown_challenge_is_a_404_page(client):
    response, text = page(client, UNKNOWN)
    assert response.status_code == 404
    assert f"no enrollment challenge {UNKNOWN} at this collector" in text
    assert "<button" not in text and "<script" not in text
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize("challenge_id", ["short", "A" * 42 + "!", "A" * 44])
def test_a_malformed_challenge_id_is_a_400_page(client, challenge_id):
    response, text = page(client, challenge_id)
    assert response.status_code == 400
    assert "a challenge id is 43 characters" in text
    assert "<button" not in text


def test_the_page_is_open_on_a_collector_with_private_pages(make_app):
    # The owner has no API token: the page and the route it posts to are theirs to use.
    client = make_app(api_token=API_TOKEN, private_pages=True).test_client()
    assert client.get("/").status_code == 401
    worker, challenge = challenged(client)
    response, text = page(client, challenge["challengeId"])
    assert response.status_code == 200 and "Sign with your wallet" in text


def test_a_stellar_collectors_page_asks_for_a_stellar_signature(make_app):
    client = make_app(wallet_format="stellar").test_client()
    worker, challenge = challenged(client, FakeWorker.stellar())
    _, text = page(client, challenge["challengeId"])
    assert worker.wallet in text
    assert script_data(text)["walletFormat"] == "stellar"
