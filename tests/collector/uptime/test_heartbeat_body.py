"""collector/uptime/heartbeat_body.py: the heartbeat body as the collector decodes it, into
protocol/heartbeat.py's dataclasses, with a sentence naming the field a value is wrong in."""

import json
import re
import secrets
from datetime import UTC, datetime

import pytest

from collector.errors import ApiError
from collector.uptime.heartbeat_body import heartbeat, signer
from protocol import ProtocolError
from protocol.heartbeat import (
    MAX_CONTAINER_COUNT,
    MAX_CONTAINERS,
    MAX_LISTED,
    MAX_TEXT,
    AgentInfo,
    Container,
    Heartbeat,
    listed,
)
from protocol.wallets import InvalidWallet, normalize_wallet, stellar_address
from tests.factories import sent_heartbeat
from tests.protocol.test_heartbeat import longest_container, longest_heartbeat

WALLET = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


@pytest.fixture
def document() -> dict:
    return sent_heartbeat(WALLET)


def parsed(document: object, wallet_format: str = "evm") -> Heartbeat:
    """As collector/uptime/heartbeats.py reads a body: its wallet in the collector's format
    (which the route answers as a 400 naming walletAddress), then the rest."""
    raw = json.dumps(document).encode()
    return heartbeat(raw, normalize_wallet(signer(raw), wallet_format))


def rejected(document, match: str, wallet_format: str = "evm") -> None:
    with pytest.raises((ApiError, ProtocolError), match=match):
        parsed(document, wallet_format)


# --- parsing ------------------------------------------------------------------------------


def test_it_parses_a_complete_heartbeat(document):
    beat = parsed(document)
    assert beat.wallet == WALLET.lower()
    assert beat.timestamp == datetime(2026, 11, 24, 21, 0, tzinfo=UTC)
    assert beat.containers == (
        Container("web", "0.0.0.0:8080->80/tcp", "c0ffee", "local/busybox", "running", "healthy"),
        Container("worker", ""),
    )
    assert beat.agent == AgentInfo("0.1.0", "node-1", True)


def test_it_parses_the_plans_plain_heartbeat_with_only_name_and_port():
    beat = parsed(
        {
            "walletAddress": WALLET,
            "timestamp": "2026-11-24T21:00:00Z",
            "containers": [{"containerName": "web", "port": "80/tcp"}],
        }
    )
    assert beat.containers == (Container("web", "80/tcp"),)
    assert beat.agent is None


def test_missing_containers_mean_no_containers(document):
    del document["containers"]
    assert parsed(document).containers == ()


def test_it_keeps_docker_being_unavailable(document):
    document["agent"]["dockerAvailable"] = False
    document["containers"] = []
    beat = parsed(document)
    assert beat.agent.dockerAvailable is False
    assert beat.containers == ()


def test_docker_counts_as_available_when_the_agent_does_not_say(document):
    del document["agent"]["dockerAvailable"]
    assert parsed(document).agent.dockerAvailable is True


def test_it_ignores_unknown_fields_at_every_level(document):
    expected = parsed(document)
    document["future"] = {"anything": [1, 2, 3]}
    document["containers"][0]["labels"] = {"a": "b"}
    document["agent"]["uptimeSeconds"] = 12
    assert parsed(document) == expected


@pytest.mark.parametrize("body", [[], "heartbeat", None, 42, True])
def test_it_rejects_a_body_that_is_not_an_object(body):
    rejected(body, "must be a JSON object")


@pytest.mark.parametrize("value", [{"containerName": "web"}, "web", 1, None])
def test_it_rejects_containers_that_are_not_a_list(document, value):
    document["containers"] = value
    rejected(document, "^containers must be a list$")


def test_it_accepts_the_maximum_number_of_containers(document):
    document["containers"] = [{"containerName": f"c{i}"} for i in range(MAX_CONTAINERS)]
    assert len(parsed(document).containers) == MAX_CONTAINERS


def test_it_rejects_too_many_containers(document):
    document["containers"] = [{"containerName": f"c{i}"} for i in range(MAX_CONTAINERS + 1)]
    rejected(document, f"at most {MAX_CONTAINERS} entries")


@pytest.mark.parametrize(
    ("container", "complaint"),
    [
        pytest.param({"port": "80/tcp"}, "containerName must be a string", id="missing-name"),
        pytest.param({"containerName": None}, "containerName must be a string", id="null-name"),
        pytest.param({"containerName": ""}, "containerName must not be empty", id="empty-name"),
        pytest.param({"containerName": 7}, "containerName must be a string", id="numeric-name"),
        pytest.param({"containerName": "w", "port": 8080}, "port must be a string", id="int-port"),
        pytest.param(
            {"containerName": "w", "port": ["80"]}, "port must be a string", id="list-port"
        ),
        pytest.param(
            {"containerName": "w", "state": True}, "state must be a string", id="bool-state"
        ),
        pytest.param({"containerName": "w", "id": 1}, "id must be a string", id="numeric-id"),
        pytest.param(
            {"containerName": "w" * (MAX_TEXT + 1)},
            f"containerName must be printable text of at most {MAX_TEXT} characters",
            id="long-name",
        ),
        pytest.param({"containerName": "web\n"}, "containerName must be printable", id="newline"),
        pytest.param(
            {"containerName": "w", "image": "a\x1b[31m"}, "image must be printable", id="esc"
        ),
    ],
)
def test_it_rejects_a_malformed_container_naming_where(document, container, complaint):
    document["containers"][1] = container
    rejected(document, re.escape(f"containers[1].{complaint}"))


@pytest.mark.parametrize("container", ["web", ["web"], None, 3])
def test_it_rejects_a_container_that_is_not_an_object(document, container):
    document["containers"][0] = container
    rejected(document, r"^containers\[0\] must be an object$")


def test_it_accepts_container_text_of_the_maximum_length(document):
    document["containers"] = [{"containerName": "w" * MAX_TEXT, "image": "i" * MAX_TEXT}]
    assert parsed(document).containers[0].containerName == "w" * MAX_TEXT


def test_a_null_port_is_an_empty_port(document):
    document["containers"] = [{"containerName": "web", "port": None}]
    assert parsed(document).containers[0].port == ""


@pytest.mark.parametrize("value", ["false", "true", 0, 1, None, []])
def test_it_rejects_a_docker_available_that_is_not_a_boolean(document, value):
    document["agent"]["dockerAvailable"] = value
    rejected(document, "agent.dockerAvailable must be true or false")


@pytest.mark.parametrize("value", ["node-1", ["x"], False, 1])
def test_it_rejects_an_agent_that_is_not_an_object(document, value):
    document["agent"] = value
    rejected(document, "^agent must be an object$")


@pytest.mark.parametrize(
    ("key", "value"), [("version", 1), ("hostname", ["h"]), ("hostname", "h\x07")]
)
def test_it_rejects_agent_text_that_is_not_printable_text(document, key, value):
    document["agent"][key] = value
    rejected(document, f"agent.{key} must be")


def test_a_null_agent_is_no_agent(document):
    document["agent"] = None
    assert parsed(document).agent is None


@pytest.mark.parametrize("wallet", [None, "0x123", WALLET[:-1] + "D"])
def test_it_rejects_a_bad_wallet(document, wallet):
    document["walletAddress"] = wallet
    with pytest.raises(InvalidWallet):
        parsed(document)


def test_it_validates_the_wallet_in_the_configured_format(document):
    key = stellar_address(secrets.token_bytes(32))
    document["walletAddress"] = key
    assert parsed(document, "stellar").wallet == key
    rejected(document, "0x followed by 40 hex digits", "evm")
    document["walletAddress"] = WALLET
    rejected(document, "Stellar public key", "stellar")


@pytest.mark.parametrize("timestamp", [None, "2026-11-24T21:00:00", "2026-02-30T00:00:00Z", 17])
def test_it_rejects_a_bad_timestamp(document, timestamp):
    document["timestamp"] = timestamp
    rejected(document, "timestamp")


@pytest.mark.parametrize(
    "beat",
    [
        pytest.param(Heartbeat(WALLET.lower(), datetime(2026, 1, 1, tzinfo=UTC)), id="bare"),
        pytest.param(
            Heartbeat(
                WALLET.lower(),
                datetime(2026, 11, 24, 21, 0, 0, 123456, tzinfo=UTC),
                (
                    Container("web", "0.0.0.0:8080->80/tcp", "c0ffee", "img", "running", "healthy"),
                    Container("db"),
                    Container("cache", "6379/tcp", state="exited"),
                ),
                AgentInfo("1.2.3", "node-1", True),
            ),
            id="full",
        ),
        pytest.param(
            Heartbeat(
                WALLET.lower(),
                datetime(2026, 11, 24, 21, 0, tzinfo=UTC),
                (),
                AgentInfo(dockerAvailable=False),
            ),
            id="docker-unavailable",
        ),
    ],
)
def test_to_body_round_trips_through_the_collectors_decoder(beat):
    assert parsed(json.loads(beat.to_body())) == beat


def test_to_body_round_trips_a_container_count():
    beat = Heartbeat(
        WALLET.lower(), datetime(2026, 1, 1, tzinfo=UTC), (Container("web"),), container_count=3000
    )
    assert json.loads(beat.to_body())["containerCount"] == 3000
    assert parsed(json.loads(beat.to_body())) == beat
    assert beat.container_total == 3000


def test_to_body_round_trips_a_stellar_wallet():
    beat = Heartbeat(stellar_address(secrets.token_bytes(32)), datetime(2026, 1, 1, tzinfo=UTC))
    assert parsed(json.loads(beat.to_body()), "stellar") == beat


def test_the_longest_heartbeat_an_agent_sends_is_taken_whole():
    body = longest_heartbeat(
        listed(longest_container(i) for i in range(3 * MAX_LISTED)), MAX_CONTAINER_COUNT
    ).to_body()
    assert len(parsed(json.loads(body), "stellar").containers) == MAX_LISTED


@pytest.mark.parametrize("count", [2, 3000, MAX_CONTAINER_COUNT])
def test_it_accepts_a_container_count_from_the_listed_to_the_maximum(document, count):
    document["containerCount"] = count
    assert parsed(document).container_count == count


def test_without_a_count_the_total_is_the_lists_length(document):
    beat = parsed(document)
    assert (beat.container_count, beat.container_total) == (None, 2)
    document["containerCount"] = None
    assert parsed(document).container_count is None


@pytest.mark.parametrize(
    ("count", "complaint"),
    [
        (1, "from the 2 containers listed to 1000000"),
        (MAX_CONTAINER_COUNT + 1, "from the 2 containers listed to 1000000"),
        (-1, "from the 2 containers listed"),
        (True, "must be a whole number"),
        (2.0, "must be a whole number"),
        ("3000", "must be a whole number"),
    ],
)
def test_it_rejects_a_container_count_that_is_not_one(document, count, complaint):
    document["containerCount"] = count
    rejected(document, complaint)
