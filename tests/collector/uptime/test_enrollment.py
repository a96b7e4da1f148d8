"""Enrollment: a key is bound to a wallet only on the wallet's word (its signature over a
one-time challenge, or an operator's token), tried as a dishonest owner or a stranger
would; and the enrollment tokens."""

import base64
import hashlib
import json
from datetime import timedelta

import httpx
import pytest

from collector.store.models import EnrollmentChallenge, EnrollmentToken, Worker
from collector.uptime.enrollment import issue_token
from protocol.heartbeat import SIGNATURE_HEADER
from protocol.times import utcnow
from tests.conftest import operator_client
from tests.factories import FakeWorker, Wallet, at_once

API_TOKEN = "a" * 32


def token_for(wallet: str, ttl: timedelta = timedelta(hours=1)) -> str:
    return issue_token(wallet, ttl, utcnow())


def keys(dbconn) -> list:
    return sorted((w.wallet_address, w.public_key) for w in Worker.select())


@pytest.fixture
def enrolled(client) -> FakeWorker:
    worker = FakeWorker()
    assert worker.enroll(client).status_code == 201
    return worker


# --- the wallet's signature -----------------------------------------------------------------


def test_the_owners_signature_over_a_challenge_enrolls_the_key(client, dbconn):
    worker = FakeWorker()
    challenge = worker.challenge(client)
    assert challenge.status_code == 201
    shown = challenge.json
    assert (shown["walletAddress"], shown["publicKey"]) == (worker.wallet, worker.public_key)
    assert shown["status"] == "pending"
    assert shown["signUrl"] == f"http://localhost/enroll/{shown['challengeId']}"
    # The text names the collector, the wallet, the key, the challenge and its expiry.
    for part in ("http://localhost", worker.wallet, worker.public_key, shown["challengeId"]):
        assert part in shown["message"]
    assert f"Expires: {shown['expiresAt']}" in shown["message"]
    assert keys(dbconn) == []  # asking enrolls nothing

    answer = worker.sign_challenge(client, shown)
    assert (answer.status_code, answer.json["enrollment"]) == (201, "enrolled")
    assert keys(dbconn) == [(worker.wallet, worker.public_key)]
    status = client.get(f"/workers/enroll/challenge/{shown['challengeId']}").json["status"]
    assert status == "used"
    assert worker.beat(client).status_code == 200


def test_the_same_key_again_needs_no_proof_and_changes_nothing(client, enrolled):
    again = FakeWorker(enrolled.wallet)
    again.key = enrolled.key
    answer = again.enroll(client)  # no token, no owner: only the same key is harmless
    assert (answer.status_code, answer.json["enrollment"]) == (200, "unchanged")
    assert (enrolled.enroll(client).status_code, enrolled.enroll(client).json["enrollment"]) == (
        200,
        "unchanged",
    )


def test_nobody_enrolls_a_wallet_without_its_signature(client, dbconn):
    """Wallet squatting: the first comer no longer owns a wallet's uptime."""
    squatter = FakeWorker(FakeWorker().wallet)  # someone else's wallet, no way to sign for it
    refused = squatter.enroll(client)
    assert refused.status_code == 401
    assert "needs the wallet's own signature" in refused.json["error"]
    assert keys(dbconn) == []


def test_a_challenge_signed_by_another_wallet_is_refused(client, dbconn):
    victim = FakeWorker()
    challenge = victim.challenge(client).json
    stranger = Wallet()
    answer = victim.sign_challenge(client, challenge, signer=stranger)
    assert answer.status_code == 401
    assert answer.json["error"] == f"signature is not by wallet {victim.wallet} over this message"
    assert keys(dbconn) == []
    # The challenge stays usable by its owner.
    assert victim.sign_challenge(client, challenge).status_code == 201


def test_a_signature_made_for_another_collector_is_refused(make_app, dbconn):
    ours = make_app(public_url="https://collector.example").test_client()
    theirs = make_app(public_url="https://phish.example").test_client()
    worker = FakeWorker()
    # The owner was shown, and signed, the other collector's challenge for the same key.
    signed_there = worker.owner.sign(worker.challenge(theirs).json["message"])
    here = worker.challenge(ours).json
    assert "https://collector.example" in here["message"]
    path = f"/workers/enroll/challenge/{here['challengeId']}"
    answer = ours.post(path, json={"signature": signed_there})
    assert answer.status_code == 401 and "not by wallet" in answer.json["error"]
    assert keys(dbconn) == []


def test_an_expired_challenge_is_refused(client, dbconn):
    worker = FakeWorker()
    challenge = worker.challenge(client).json
    EnrollmentChallenge.update(expires_at=utcnow() - timedelta(seconds=1)).execute()
    answer = worker.sign_challenge(client, challenge)
    assert answer.status_code == 409 and "used or has expired" in answer.json["error"]
    assert keys(dbconn) == []
    shown = client.get(f"/workers/enroll/challenge/{challenge['challengeId']}").json
    assert shown["status"] == "expired"


def test_a_signed_challenge_enrolls_once_and_cannot_be_replayed(client, dbconn):
    first = FakeWorker()
    challenge = first.challenge(client).json
    signature = first.owner.sign(challenge["message"])
    path = f"/workers/enroll/challenge/{challenge['challengeId']}"
    assert client.post(path, json={"signature": signature}).status_code == 201
    # The owner moves the wallet to a new machine...
    second = first.another_machine()
    assert second.enroll(client).json["enrollment"] == "replaced"
    # ...and whoever kept the first signed challenge cannot bring the old key back.
    replayed = client.post(path, json={"signature": signature})
    assert replayed.status_code == 409
    assert keys(dbconn) == [(first.wallet, second.public_key)]


def test_a_new_machine_of_the_same_wallet_replaces_the_old_one(client, enrolled, history):
    """Decision: one key per wallet, so one machine per wallet; a wallet's signature for a
    new key moves the wallet there, and uptime is counted once, for the wallet."""
    history.known(enrolled.wallet)
    assert enrolled.beat(client, utcnow() - timedelta(minutes=10)).status_code == 200
    new = enrolled.another_machine()
    assert new.enroll(client).json["enrollment"] == "replaced"
    refused = enrolled.beat(client)
    assert refused.status_code == 401  # the old machine's key no longer verifies
    assert new.beat(client).json["action"] == "extended"  # the wallet's one window goes on
    [shown] = operator_client(client.application).get("/workers").json["items"]
    assert (shown["walletAddress"], shown["publicKey"]) == (enrolled.wallet, new.public_key)


def test_asking_for_a_challenge_needs_the_agents_own_signature(client, dbconn):
    worker, other = FakeWorker(), FakeWorker()
    raw, _ = worker.signed({"walletAddress": worker.wallet, "publicKey": worker.public_key})
    _, headers = other.signed(raw)
    answer = client.post("/workers/enroll/challenge", data=raw, headers=headers)
    assert answer.status_code == 401 and "signed by the key it names" in answer.json["error"]
    assert EnrollmentChallenge.select().count() == 0


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        ("0x1234", "0x followed by 130 hex digits"),
        (12, "must be a string"),
    ],
)
def test_a_malformed_wallet_signature_is_refused(client, dbconn, signature, message):
    worker = FakeWorker()
    challenge = worker.challenge(client).json
    path = f"/workers/enroll/challenge/{challenge['challengeId']}"
    answer = client.post(path, json={"signature": signature})
    assert answer.status_code in (400, 401) and message in answer.json["error"]
    assert keys(dbconn) == []


def test_an_unknown_or_malformed_challenge_id(client):
    assert client.get("/workers/enroll/challenge/" + "x" * 43).status_code == 404
    assert client.get("/workers/enroll/challenge/short").status_code == 400
    signed = client.post("/workers/enroll/challenge/" + "x" * 43, json={"signature": "0x"})
    assert signed.status_code == 404


def test_a_stellar_wallet_signs_as_freighter_does(make_app, dbconn):
    client = make_app(wallet_format="stellar").test_client()
    worker = FakeWorker.stellar()
    challenge = worker.challenge(client).json
    assert challenge["walletFormat"] == "stellar"
    other = Wallet("stellar")
    assert worker.sign_challenge(client, challenge, signer=other).status_code == 401
    assert worker.sign_challenge(client, challenge).status_code == 201
    assert keys(dbconn) == [(worker.wallet, worker.public_key)]


def test_the_token_policy_enrolls_only_with_a_token(make_app, dbconn):
    client = make_app(enrollment_policy="token").test_client()
    worker = FakeWorker()
    refused = worker.enroll(client)
    assert refused.status_code == 403 and "only with an enrollment token" in refused.json["error"]
    assert keys(dbconn) == []
    token = token_for(worker.wallet)
    assert worker.enroll(client, token).status_code == 201
    stored = EnrollmentToken.get(EnrollmentToken.wallet_address == worker.wallet)
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert stored.used_at is not None


def test_the_sweeper_deletes_challenges_a_day_past_their_expiry(client, dbconn):
    from collector.uptime.enrollment import prune_challenges

    FakeWorker().challenge(client)
    now = utcnow()
    assert prune_challenges(now) == 0
    assert prune_challenges(now + timedelta(minutes=15, days=1, seconds=1)) == 1


# --- the operator's tokens ------------------------------------------------------------------


def test_a_token_replaces_the_key_once(client, dbconn, enrolled):
    replacement = FakeWorker(enrolled.wallet)
    token = token_for(enrolled.wallet)
    replaced = replacement.enroll(client, token)
    assert (replaced.status_code, replaced.json["enrollment"]) == (200, "replaced")
    assert enrolled.beat(client).status_code == 401  # the old key no longer verifies
    assert replacement.beat(client).status_code == 200
    third = FakeWorker(enrolled.wallet)
    assert third.enroll(client, token).status_code == 401  # single use


@pytest.mark.parametrize("problem", ["expired", "other-wallet", "unknown"])
def test_an_unusable_token_is_refused(client, dbconn, enrolled, problem):
    token = {
        "expired": lambda: issue_token(
            enrolled.wallet, timedelta(hours=1), utcnow() - timedelta(hours=2)
        ),
        "other-wallet": lambda: token_for(FakeWorker().wallet),
        "unknown": lambda: "tsk_" + "x" * 43,
    }[problem]()
    before = keys(dbconn)
    response = FakeWorker(enrolled.wallet).enroll(client, token)
    assert response.status_code == 401
    assert keys(dbconn) == before


def test_a_malformed_token_is_a_bad_request(client):
    assert FakeWorker().enroll(client, "not a token").status_code == 400


def test_tokens_over_http_need_the_api_token(make_app, dbconn):
    open_client = make_app(api_token=None).test_client()
    worker = FakeWorker()
    assert (
        open_client.post("/workers/tokens", json={"walletAddress": worker.wallet}).status_code
        == 403
    )
    guarded = make_app(api_token=API_TOKEN).test_client()
    assert guarded.post("/workers/tokens", json={"walletAddress": worker.wallet}).status_code == 401
    issued = guarded.post(
        "/workers/tokens",
        json={"walletAddress": worker.wallet},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    assert issued.status_code == 201
    assert worker.enroll(guarded, issued.json["token"]).status_code == 201


# --- the key itself ---------------------------------------------------------------------------


def test_enrollment_must_be_signed_by_the_key_being_enrolled(client, dbconn):
    worker, other = FakeWorker(), FakeWorker()
    body = {"walletAddress": worker.wallet, "publicKey": worker.public_key}
    raw, _ = worker.signed(body)
    _, headers = other.signed(raw)
    response = client.post("/workers/enroll", data=raw, headers=headers)
    assert response.status_code == 401 and "signed by the key" in response.json["error"]
    assert keys(dbconn) == []


def test_a_public_key_of_the_wrong_length_is_a_bad_request(client, dbconn):
    worker = FakeWorker()
    raw, headers = worker.signed({"walletAddress": worker.wallet, "publicKey": "AAAA"})
    assert client.post("/workers/enroll/challenge", data=raw, headers=headers).status_code == 400
    assert client.post("/workers/enroll", data=raw, headers=headers).status_code == 400
    assert keys(dbconn) == []


IDENTITY_KEY = "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="  # 01 00 ... 00
# R = identity, S = 0: verifies for the identity key over any body under a cofactored check.
UNIVERSAL_SIGNATURE = base64.b64encode(bytes([1]) + bytes(63)).decode()


def test_a_small_order_key_cannot_enroll(client, dbconn):
    body = json.dumps({"walletAddress": FakeWorker().wallet, "publicKey": IDENTITY_KEY}).encode()
    headers = {SIGNATURE_HEADER: UNIVERSAL_SIGNATURE, "Content-Type": "application/json"}
    for route in ("/workers/enroll", "/workers/enroll/challenge"):
        response = client.post(route, data=body, headers=headers)
        assert response.status_code == 400 and "small-order" in response.json["error"]
    assert keys(dbconn) == []


def test_a_small_order_key_stored_before_the_check_sends_no_heartbeat(client, dbconn):
    worker = FakeWorker()
    Worker.create(wallet_address=worker.wallet, public_key=IDENTITY_KEY)
    body = json.dumps(worker.heartbeat_body()).encode()
    headers = {SIGNATURE_HEADER: UNIVERSAL_SIGNATURE, "Content-Type": "application/json"}
    response = client.post("/heartbeat", data=body, headers=headers)
    assert response.status_code == 401 and "small-order" in response.json["error"]
    assert Worker.get_by_id(worker.wallet).last_heartbeat_at is None


def spelled_otherwise(public_key: str) -> str:
    """The same key's bytes in another base64 spelling: the last character carries two
    unused bits, and setting one spells the same bytes."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    spelled = public_key[:-2] + alphabet[alphabet.index(public_key[-2]) | 1] + "="
    assert spelled != public_key
    return spelled


def test_the_key_is_stored_and_shown_in_its_canonical_spelling(client, dbconn):
    worker = FakeWorker()
    spelled = spelled_otherwise(worker.public_key)
    raw, headers = worker.signed({"walletAddress": worker.wallet, "publicKey": spelled})
    challenge = client.post("/workers/enroll/challenge", data=raw, headers=headers).json
    assert challenge["publicKey"] == worker.public_key
    assert worker.sign_challenge(client, challenge).status_code == 201
    assert keys(dbconn) == [(worker.wallet, worker.public_key)]
    operator = operator_client(client.application)
    assert operator.get(f"/workers/{worker.wallet}").json["publicKey"] == worker.public_key
    assert operator.get("/workers").json["items"][0]["publicKey"] == worker.public_key


def _sign_at_once(url: str, barrier, results) -> None:
    """In a process of its own: send the signed challenge the test left in the environment,
    all processes at once."""
    import os

    barrier.wait()
    path, signature = os.environ["TASSIUM_TEST_CHALLENGE"].split(" ")
    answer = httpx.post(url + path, json={"signature": signature}, timeout=30)
    results.put(answer.status_code)


@pytest.mark.slow
def test_one_signed_challenge_sent_by_four_processes_at_once_enrolls_once(
    serve_collector, monkeypatch, dbconn
):
    served = serve_collector(processes=2)
    worker = FakeWorker()
    challenge = worker.challenge_at(served.url).json()
    path = f"/workers/enroll/challenge/{challenge['challengeId']}"
    monkeypatch.setenv(
        "TASSIUM_TEST_CHALLENGE", f"{path} {worker.owner.sign(challenge['message'])}"
    )
    statuses = at_once(_sign_at_once, served.url, processes=4)
    assert sorted(statuses) == [201, 409, 409, 409]
    assert keys(dbconn) == [(worker.wallet, worker.public_key)]
