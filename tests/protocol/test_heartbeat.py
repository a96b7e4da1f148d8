"""protocol/heartbeat.py: the heartbeat body, its validation and its Ed25519 signature (checked
by collector/identity/signatures.py, tested here beside the signing)."""

import base64
import json
import secrets
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.identity.signatures import load_public_key, verify
from protocol import ProtocolError
from protocol.heartbeat import (
    MAX_CONTAINER_COUNT,
    MAX_CONTAINERS,
    MAX_LISTED,
    MAX_LISTED_BYTES,
    MAX_TEXT,
    SIGNATURE_HEADER,
    AgentInfo,
    Container,
    Heartbeat,
    System,
    encode_public_key,
    listed,
    sign,
)
from protocol.wallets import stellar_address
from tests.factories import FakeWorker, sent_heartbeat

WALLET = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


@pytest.fixture
def document() -> dict:
    return sent_heartbeat(WALLET)


# --- the body the agent sends ---------------------------------------------------------------


def test_to_body_uses_the_wire_names_and_leaves_out_absent_fields():
    beat = Heartbeat(
        WALLET.lower(),
        datetime(2026, 11, 24, 21, 0, tzinfo=UTC),
        (Container("web", "80/tcp"),),
        AgentInfo(version="1.0", dockerAvailable=False),
    )
    assert json.loads(beat.to_body()) == {
        "walletAddress": WALLET.lower(),
        "timestamp": "2026-11-24T21:00:00Z",
        "containers": [{"containerName": "web", "port": "80/tcp"}],
        "agent": {"version": "1.0", "dockerAvailable": False},
    }


# --- signatures ---------------------------------------------------------------------------


@pytest.fixture
def worker() -> FakeWorker:
    return FakeWorker()


@pytest.fixture
def body(document) -> bytes:
    return json.dumps(document).encode()


def test_a_signature_by_the_key_verifies(worker, body):
    assert verify(worker.public_key, body, sign(worker.key, body)) is None


def test_the_signature_header_the_factory_sends_verifies(worker, document):
    raw, headers = worker.signed(document)
    verify(worker.public_key, raw, headers[SIGNATURE_HEADER])


def test_it_rejects_a_signature_by_another_key(worker, body):
    other = Ed25519PrivateKey.generate()
    with pytest.raises(ProtocolError, match="does not match the enrolled key"):
        verify(worker.public_key, body, sign(other, body))


@pytest.mark.parametrize(
    "alter",
    [
        pytest.param(lambda b: b.replace(b"web", b"wex", 1), id="one-byte"),
        pytest.param(lambda b: b + b" ", id="trailing-space"),
        pytest.param(lambda b: json.dumps(json.loads(b), indent=1).encode(), id="same-json"),
        pytest.param(lambda b: b[:-1], id="truncated"),
    ],
)
def test_it_rejects_a_signature_over_a_different_body(worker, body, alter):
    signature = sign(worker.key, body)
    with pytest.raises(ProtocolError, match="does not match the enrolled key"):
        verify(worker.public_key, alter(body), signature)


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("not base64!", id="punctuation"),
        pytest.param("QUJD\nREVG", id="embedded-newline"),
        pytest.param("QUJDRA", id="missing-padding"),
        pytest.param("\u00e9\u00e9\u00e9\u00e9", id="non-ascii"),
    ],
)
def test_it_rejects_a_signature_that_is_not_base64(worker, body, signature):
    with pytest.raises(ProtocolError, match=f"{SIGNATURE_HEADER} is not valid base64"):
        verify(worker.public_key, body, signature)


@pytest.mark.parametrize("length", [3, 63, 65])
def test_it_rejects_a_base64_signature_of_the_wrong_length(worker, body, length):
    signature = base64.b64encode(secrets.token_bytes(length)).decode()
    with pytest.raises(ProtocolError, match="signature is 64 bytes"):
        verify(worker.public_key, body, signature)


@pytest.mark.parametrize("signature", [None, ""])
def test_it_rejects_a_missing_signature(worker, body, signature):
    with pytest.raises(ProtocolError, match=f"missing {SIGNATURE_HEADER} header"):
        verify(worker.public_key, body, signature)


def test_it_tolerates_whitespace_around_the_signature_header(worker, body):
    verify(worker.public_key, body, f"  {sign(worker.key, body)}\t")


def test_verify_rejects_a_malformed_public_key(worker, body):
    with pytest.raises(ProtocolError, match="publicKey"):
        verify("AAAA", body, sign(worker.key, body))


# --- public keys --------------------------------------------------------------------------


def test_a_public_key_round_trips_through_its_wire_form(worker):
    key = load_public_key(worker.public_key)
    assert key.public_bytes_raw() == worker.key.public_key().public_bytes_raw()
    assert encode_public_key(key) == worker.public_key
    assert len(base64.b64decode(worker.public_key)) == 32


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_it_rejects_a_public_key_of_the_wrong_length(length):
    with pytest.raises(ProtocolError, match="32-byte Ed25519 key"):
        load_public_key(base64.b64encode(secrets.token_bytes(length)).decode())


@pytest.mark.parametrize("value", [None, 32, b"A" * 44, ["key"]])
def test_it_rejects_a_public_key_that_is_not_a_string(value):
    with pytest.raises(ProtocolError, match="publicKey must be a base64 string"):
        load_public_key(value)


@pytest.mark.parametrize("value", ["not-base64!", "\u00e9" * 44, "A" * 43])
def test_it_rejects_a_public_key_that_is_not_base64(value):
    with pytest.raises(ProtocolError, match="publicKey is not valid base64"):
        load_public_key(value)


# --- large machines: what a heartbeat lists, and containerCount ------------------------------

# Every byte a container may take: six texts at MAX_TEXT, two numbers written at their longest
# (17 significant digits and a three-digit exponent, as json writes a float).
LONGEST_NUMBER = 1.2345678901234567e-300
ASTRAL = "\U0001f600"  # written as a surrogate pair of \uXXXX escapes: 12 bytes a character
DEFAULT_MAX_BODY_BYTES = 256 * 1024  # the collector's max_body_bytes (collector/config.py)


def longest_container(index: int = 0, char: str = "x") -> Container:
    text = f"{index:04d}" + char * (MAX_TEXT - 4)
    return Container(*(text,) * 6, cpuPercent=LONGEST_NUMBER, memUsageMb=LONGEST_NUMBER)


def longest_heartbeat(containers: tuple[Container, ...], count: int) -> Heartbeat:
    """Everything besides the list at its longest too, in its most expensive characters."""
    return Heartbeat(
        stellar_address(bytes(32)),  # 56 characters, longer than an EVM wallet
        datetime(2026, 11, 24, 21, 0, 0, 123456, tzinfo=UTC),
        containers,
        AgentInfo(ASTRAL * MAX_TEXT, ASTRAL * MAX_TEXT, True),
        System(MAX_CONTAINERS, *(LONGEST_NUMBER,) * 5),
        "255.255.255.255",
        count,
    )


def test_max_listed_containers_of_the_longest_fields_fit_well_under_the_default_limit():
    one = len(json.dumps(longest_container().__dict__, separators=(",", ":")))
    assert one == 1676
    # 100 × (1,676 + a comma) = 167,700 bytes = 164 KiB, within the list's budget: so the
    # budget only ever cuts a list of escaped text.
    assert MAX_LISTED * (one + 1) == 167_700 <= MAX_LISTED_BYTES
    body = longest_heartbeat(
        listed(longest_container(i) for i in range(3 * MAX_LISTED)), MAX_CONTAINER_COUNT
    ).to_body()
    assert len(json.loads(body)["containers"]) == MAX_LISTED
    assert len(body) < 175 * 1024 < 0.7 * DEFAULT_MAX_BODY_BYTES


def test_a_list_of_escaped_text_is_cut_at_the_byte_budget():
    # A container of astral text takes about 18 KB of JSON: only ten or so fit the budget.
    chosen = listed(longest_container(i, ASTRAL) for i in range(MAX_LISTED))
    assert 5 < len(chosen) < MAX_LISTED
    size = sum(len(json.dumps(c.__dict__, separators=(",", ":"))) + 1 for c in chosen)
    assert size <= MAX_LISTED_BYTES
    body = longest_heartbeat(chosen, MAX_LISTED).to_body()
    # The rest of the body at its most expensive is about 7 KiB: under 200 KiB in all.
    assert len(body) - size < 7 * 1024
    assert len(body) < 200 * 1024


def test_listed_puts_running_containers_first_then_orders_by_name_then_id():
    containers = [
        Container("b", state="exited"),
        Container("c", state="running"),
        Container("a", state="created"),
        Container("a", id="2", state="running"),
        Container("a", id="1", state="running"),
        Container("d"),  # an engine that gave no state: not running
    ]
    assert [(c.containerName, c.id, c.state) for c in listed(containers)] == [
        ("a", "1", "running"),
        ("a", "2", "running"),
        ("c", None, "running"),
        ("a", None, "created"),
        ("b", None, "exited"),
        ("d", None, None),
    ]


def test_listed_keeps_the_first_max_listed_in_that_order_whatever_the_engine_gave():
    names = [f"app-{i:04d}" for i in range(3 * MAX_LISTED)]
    containers = [
        Container(name, state="running" if i % 3 else "exited") for i, name in enumerate(names)
    ]
    chosen = listed(reversed(containers))
    running = sorted(c.containerName for c in containers if c.state == "running")
    assert [c.containerName for c in chosen] == running[:MAX_LISTED]
    assert listed(containers) == chosen  # the same list tick after tick


def test_a_short_list_is_kept_whole():
    assert listed([Container("web", state="running")]) == (Container("web", state="running"),)
    assert listed([]) == ()
