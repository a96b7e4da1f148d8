"""collector/identity/sign_in.py: a wallet signs in with a real EIP-4361 message (eth-account)
or the same text as a SEP-53 message (stellar-sdk), and gets a short-lived token for itself alone;
an expired, replayed, altered or foreign-domain sign-in opens nothing."""

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest

from collector.identity.access import token_hash
from collector.identity.sign_in import CHALLENGES_KEPT, prune
from collector.store.models import SignInChallenge, WalletSession
from protocol.times import parse_timestamp, utcnow
from tests.factories import Wallet, bearer

# EIP-4361's message, line by line (its ABNF, with the optional lines this collector writes).
EIP4361 = re.compile(
    r"(?P<domain>[^\s/]+) wants you to sign in with your Ethereum account:\n"
    r"(?P<address>0x[0-9a-fA-F]{40})\n"
    r"\n"
    r"(?P<statement>[^\n]+)\n"
    r"\n"
    r"URI: (?P<uri>\S+)\n"
    r"Version: 1\n"
    r"Chain ID: (?P<chain>[0-9]+)\n"
    r"Nonce: (?P<nonce>[A-Za-z0-9]{8,})\n"
    r"Issued At: (?P<issued>\S+)\n"
    r"Expiration Time: (?P<expires>\S+)"
)


def ask(client, wallet: Wallet, **headers):
    answer = client.post("/auth/challenge", json={"wallet": wallet.address}, headers=headers)
    assert answer.status_code == 201, answer.json
    return answer.json["message"]


def open_session(client, wallet: Wallet, message: str, **headers):
    return client.post(
        "/auth/session",
        json={"message": message, "signature": wallet.sign(message)},
        headers=headers,
    )


def test_an_evm_wallet_signs_in_with_an_eip_4361_message(client, dbconn):
    wallet = Wallet()
    message = ask(client, wallet)
    fields = EIP4361.fullmatch(message)
    assert fields is not None, message
    assert fields["domain"] == "localhost" and fields["uri"] == "http://localhost"
    assert fields["address"] == wallet.address
    issued, expires = parse_timestamp(fields["issued"]), parse_timestamp(fields["expires"])
    assert timedelta(minutes=4) < expires - issued <= timedelta(minutes=5)

    opened = open_session(client, wallet, message)
    assert opened.status_code == 201, opened.json
    token = opened.json["token"]
    assert opened.json["walletAddress"] == wallet.address
    lasts = parse_timestamp(opened.json["expiresAt"]) - utcnow()
    assert timedelta(minutes=59) < lasts <= timedelta(hours=1)  # session_ttl's default
    me = client.get("/auth/session", headers=bearer(token))
    assert me.status_code == 200
    assert me.json["walletAddress"] == wallet.address and me.json["operator"] is False
    # Kept only as its hash: the database alone signs nobody in.
    (row,) = WalletSession.select()
    assert row.token_hash == token_hash(token) and token not in row.token_hash


def test_a_stellar_wallet_signs_the_same_text_as_a_sep_53_message(make_app, dbconn):
    client = make_app(wallet_format="stellar").test_client()
    wallet = Wallet("stellar")
    message = ask(client, wallet)
    assert message.startswith("localhost wants you to sign in with your Stellar account:\n")
    assert message.split("\n")[1] == wallet.address
    opened = open_session(client, wallet, message)
    assert opened.status_code == 201, opened.json
    assert (
        client.get("/auth/session", headers=bearer(opened.json["token"])).json["walletAddress"]
        == wallet.address
    )


def test_the_front_ends_dialect_has_the_same_sign_in(client, dbconn):
    wallet = Wallet()
    token = wallet.sign_in(client, "/api/v1")
    me = client.get("/api/v1/auth/session", headers=bearer(token))
    assert me.json["walletAddress"] == wallet.address


def refused(answer, status: int, words: str) -> None:
    assert answer.status_code == status, answer.json
    assert words in answer.json["error"]


def test_a_replayed_sign_in_opens_nothing(client, dbconn):
    wallet = Wallet()
    message = ask(client, wallet)
    assert open_session(client, wallet, message).status_code == 201
    refused(open_session(client, wallet, message), 401, "used already")
    assert WalletSession.select().count() == 1


def test_an_expired_sign_in_opens_nothing(client, dbconn):
    wallet = Wallet()
    message = ask(client, wallet)
    SignInChallenge.update(expires_at=utcnow() - timedelta(seconds=1)).execute()
    refused(open_session(client, wallet, message), 401, "expired")
    assert WalletSession.select().count() == 0


def test_a_message_for_another_domain_opens_nothing(client, dbconn):
    wallet = Wallet()
    message = ask(client, wallet)
    phished = message.replace("localhost wants", "collector.evil.example wants", 1)
    refused(open_session(client, wallet, phished), 401, "for collector.evil.example")
    assert WalletSession.select().count() == 0


def test_without_public_url_no_message_names_a_domain_the_caller_chose(client, dbconn):
    # Else a phishing site could have a message naming its own domain issued here, which
    # its victims' wallets would show as matching the site they are on.
    answer = client.post(
        "/auth/challenge", json={"wallet": Wallet().address}, headers={"Host": "phish.example"}
    )
    refused(answer, 400, "no public_url, and phish.example is not a loopback address")
    assert SignInChallenge.select().count() == 0


def test_a_public_url_names_the_domain_and_refuses_messages_for_others(make_app, dbconn):
    client = make_app(public_url="https://collector.example:8443").test_client()
    wallet = Wallet()
    message = ask(client, wallet, Host="phish.example")
    fields = EIP4361.fullmatch(message)
    assert (fields["domain"], fields["uri"]) == (
        "collector.example:8443",
        "https://collector.example:8443",
    )
    assert open_session(client, wallet, message).status_code == 201


def test_an_altered_or_foreign_signature_opens_nothing(client, dbconn):
    wallet, mallory = Wallet(), Wallet()
    message = ask(client, wallet)
    altered = message.replace("It moves no funds.", "It moves all funds.")
    refused(open_session(client, wallet, altered), 401, "differs from the one")
    # Mallory signs the victim's message: the signature is not the victim's.
    answer = client.post(
        "/auth/session", json={"message": message, "signature": mallory.sign(message)}
    )
    refused(answer, 401, f"not by wallet {wallet.address}")
    refused(client.post("/auth/session", json={"message": message}), 400, "signature")
    unknown = message.replace(EIP4361.fullmatch(message)["nonce"], "0123456789abcdef")
    refused(open_session(client, wallet, unknown), 401, "no such sign-in")
    assert WalletSession.select().count() == 0
    # None of that spent the challenge: the real signature still signs in.
    assert open_session(client, wallet, message).status_code == 201


def test_bad_challenge_requests_say_why(client, dbconn):
    refused(client.post("/auth/challenge", json={"wallet": "0x123"}), 400, "wallet")
    refused(client.post("/auth/challenge", json={}), 400, "wallet is required")
    refused(client.post("/auth/challenge", json={"wallet": Wallet().address, "x": 1}), 400, "x")
    assert SignInChallenge.select().count() == 0


def test_a_session_ends_when_it_expires_or_is_signed_out(client, dbconn):
    wallet = Wallet()
    first, second = wallet.sign_in(client), wallet.sign_in(client)
    WalletSession.update(expires_at=utcnow() - timedelta(seconds=1)).where(
        WalletSession.token_hash == token_hash(first)
    ).execute()
    refused(client.get("/auth/session", headers=bearer(first)), 401, "expired or was signed out")
    assert client.delete("/auth/session", headers=bearer(second)).status_code == 204
    refused(client.get("/auth/session", headers=bearer(second)), 401, "expired or was signed out")
    refused(client.get("/auth/session"), 401, "not signed in")
    refused(client.get("/auth/session", headers=bearer("tss_made-up")), 401, "expired")


def test_the_operator_is_told_so(operator):
    assert operator.get("/auth/session").json == {"operator": True}


def test_the_sweeper_deletes_expired_sessions_and_old_challenges(client, dbconn):
    wallet = Wallet()
    token = wallet.sign_in(client)
    ask(client, wallet)
    now = utcnow()
    assert prune(now) == 0
    assert prune(now + timedelta(hours=2)) == 1  # the session
    assert prune(now + CHALLENGES_KEPT + timedelta(hours=1)) == 2  # both challenges
    refused(client.get("/auth/session", headers=bearer(token)), 401, "expired")


@pytest.mark.slow
def test_one_signed_message_sent_at_once_to_several_processes_opens_one_session(
    serve_collector, dbconn
):
    served = serve_collector(processes=2)
    wallet = Wallet()
    with httpx.Client(base_url=served.url, timeout=10) as http:
        message = http.post("/auth/challenge", json={"wallet": wallet.address}).json()["message"]
    body = {"message": message, "signature": wallet.sign(message)}

    def send(_: int) -> int:
        # A connection each, so that both processes take some.
        return httpx.post(served.url + "/auth/session", json=body, timeout=10).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(send, range(8)))
    assert statuses == [201] + [401] * 7
    assert WalletSession.select().count() == 1


def test_a_flood_of_sign_ins_from_one_address_is_limited_and_stores_nothing_more(make_app, dbconn):
    client = make_app(rate_limit_writes="3/minute").test_client()
    wallet = Wallet()
    statuses = [
        client.post("/auth/challenge", json={"wallet": wallet.address}).status_code
        for _ in range(5)
    ]
    assert statuses == [201, 201, 201, 429, 429]
    assert SignInChallenge.select().count() == 3
    refused(client.post("/auth/session", json={"message": "x", "signature": "y"}), 429, "try again")
