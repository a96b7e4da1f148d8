"""The agent's two halves in one process: taking heartbeats into the spool and draining it,
against a collector stand-in that misbehaves as the real one cannot on demand."""

import json
import logging
import time
from datetime import timedelta

import pytest

from agent import keys, status
from agent.clock import CollectorClock
from agent.config import AgentConfig
from agent.service import Agent, Liveness
from collector.identity.signatures import verify
from protocol.heartbeat import SIGNATURE_HEADER, encode_public_key
from protocol.times import parse_timestamp, utcnow
from tests.agent.fake_collector import FakeCollector, Reply, accept_everything, collector_json
from tests.agent.fake_engine import LIST_PATH
from tests.conftest import free_port
from tests.factories import agent_config, new_wallet

PORTAL = Reply(200, "text/html", b"<html>Sign in to the hotel Wi-Fi</html>")


@pytest.fixture
def make_agent(tmp_path):
    """``make_agent(collector_url, clock=None, **settings)``: an Agent with its own state
    directory and key, Docker pointed at nothing (it reports dockerAvailable=false)."""
    made = []

    def make(url: str, clock: CollectorClock | None = None, **settings) -> Agent:
        state = tmp_path / f"agent-{len(made)}"
        config = agent_config(
            url,
            state,
            docker_host=f"unix://{tmp_path}/no-docker.sock",
            **{"retry_base": 0.01, "retry_max": 0.01, **settings},
        )
        agent = Agent(config, keys.generate(config.key_path), clock)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close()


@pytest.fixture
def collector():
    with FakeCollector() as fake:
        yield fake


def stamps(bodies) -> list[str]:
    return [json.loads(b)["timestamp"] if isinstance(b, bytes) else b["timestamp"] for b in bodies]


def test_a_captive_portals_200_removes_nothing_and_warns_once(make_agent, collector, caplog):
    collector.answer = lambda request: PORTAL
    agent = make_agent(collector.url)
    taken = []
    with caplog.at_level(logging.WARNING, logger="agent.service"):
        for _ in range(4):
            taken.append(agent.take())
            report = agent.drain(force=True)
            assert report.credited == 0 and report.error is not None
    assert agent.pending() == 4
    warnings = [r for r in caplog.records if "not the collector's acknowledgement" in r.message]
    assert len(warnings) == 1

    collector.answer = accept_everything
    with caplog.at_level(logging.INFO, logger="agent.service"):
        report = agent.drain(force=True)
    assert (report.credited, report.pending, report.error) == (4, 0, None)
    assert "delivered again" in caplog.text
    assert stamps(collector.heartbeats()[-4:]) == stamps(taken)


def test_an_unreadable_spool_entry_is_set_aside_and_the_rest_delivered(make_agent, collector):
    agent = make_agent(collector.url)
    first = agent.take()
    (agent.config.spool_path / "000000000002.json").mkdir()
    agent._spool._next = 3
    third = agent.take()
    for _ in range(2):  # a directory used to raise on every drain, for ever
        agent.drain(force=True)
    assert stamps(collector.heartbeats()) == stamps([first, third])
    assert agent.pending() == 0
    assert [p.name for p in (agent.config.spool_path / "quarantine").iterdir()] == [
        "000000000002.json"
    ]


def test_a_drain_is_bounded_in_time_and_reports_progress_per_request(make_agent, collector):
    collector.answer = lambda request: Reply(
        body=json.dumps({"accepted": True}).encode(), delay=0.2
    )
    agent = make_agent(collector.url, batch_size=1)
    for _ in range(10):
        agent.take()
    calls = []
    report = agent.drain(force=True, budget=0.5, progress=lambda: calls.append(1))
    assert 1 <= report.credited < 10 and report.pending == 10 - report.credited
    assert len(calls) == report.credited
    while agent.pending():
        agent.drain(force=True)
    assert len(collector.heartbeats()) == 10


def test_after_a_failure_the_drain_waits_out_the_backoff(make_agent, collector):
    collector.answer = lambda request: PORTAL
    agent = make_agent(collector.url, retry_base=60, retry_max=60)
    agent.take()
    agent.drain(force=True)
    collector.answer = accept_everything
    assert agent.drain().credited == 0  # waiting
    assert agent.drain(force=True).credited == 1  # a new heartbeat's try does not wait


def test_heartbeats_are_stamped_on_the_collectors_clock(make_agent, collector):
    five_minutes_fast = CollectorClock(wall=lambda: time.time() + 300)
    agent = make_agent(collector.url, clock=five_minutes_fast)
    agent.sync_clock()
    stamped = parse_timestamp(json.loads(agent.take())["timestamp"])
    assert abs((stamped - utcnow()).total_seconds()) < 5
    # What was learned is kept for the next start, when the collector may be unreachable.
    agent.drain(force=True)
    assert -305 < status.read(agent.config)["clockOffset"] < -295


def test_a_clock_step_while_running_changes_no_timestamp(collector):
    wall = [time.time()]
    clock = CollectorClock(offset=0.0, wall=lambda: wall[0])
    first = clock.now()
    wall[0] -= 3600  # someone sets the machine's clock back an hour
    second = clock.now()
    assert timedelta(0) < second - first < timedelta(seconds=5)


def test_timestamps_never_repeat_or_go_back_when_the_offset_shrinks():
    clock = CollectorClock(offset=10.0)
    before = clock.now()
    clock.observe(utcnow(), clock.local(), clock.local())  # the offset drops to about 0
    assert clock.now() > before


def test_liveness_reports_a_hung_step_and_a_skipped_period():
    liveness = Liveness({"delivering": 0.05}, {"taking a heartbeat": 0.05})
    liveness.begin("delivering")
    liveness.begin("taking a heartbeat")
    liveness.end("taking a heartbeat")
    assert liveness.stuck() == []
    time.sleep(0.1)
    stuck = liveness.stuck()
    assert any(s.startswith("delivering has not progressed") for s in stuck)
    assert any(s.startswith("no taking a heartbeat begun") for s in stuck)
    liveness.end("delivering")
    liveness.begin("taking a heartbeat")
    assert liveness.stuck() == []


@pytest.mark.parametrize("saved", ['{"clockOffset": -42.5}', '{"clockOffset": "soon"}', "{oops"])
def test_the_saved_clock_offset_is_used_when_sound_and_ignored_otherwise(tmp_path, saved):
    config = AgentConfig(
        collector_url="http://127.0.0.1:9", wallet=new_wallet(), state_dir=tmp_path
    )
    config.status_path.write_text(saved)
    expected = -42.5 if "42" in saved else None
    assert status.saved_offset(config) == expected


# --- pings -------------------------------------------------------------------------------------


def ping_requests(collector) -> list:
    return [r for r in collector.requests if r.path == "/heartbeat/ping"]


def test_a_ping_is_signed_and_carries_only_the_wallet_and_the_collectors_time(
    make_agent, collector
):
    collector.answer = lambda request: collector_json(accepted=True)
    agent = make_agent(collector.url)
    assert agent.ping() is True
    (request,) = ping_requests(collector)
    verify(encode_public_key(agent.sender.key), request.body, request.headers[SIGNATURE_HEADER])
    body = request.json()
    assert set(body) == {"walletAddress", "timestamp"}
    assert body["walletAddress"] == agent.config.wallet
    assert abs(parse_timestamp(body["timestamp"]) - utcnow()) < timedelta(seconds=5)
    assert agent.pending() == 0  # a ping is never spooled


def test_a_refused_or_lost_ping_warns_once_until_pings_are_taken_again(
    make_agent, collector, caplog
):
    answers = iter(
        [collector_json(401, error="bad signature")] * 3 + [collector_json(accepted=True)]
    )
    collector.answer = lambda request: next(answers)
    agent = make_agent(collector.url)
    with caplog.at_level(logging.INFO, logger="agent.service"):
        assert [agent.ping() for _ in range(4)] == [False, False, False, True]
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["ping refused (401): bad signature", "pings are being taken again"]


def test_a_ping_to_a_collector_that_is_down_is_false_not_an_error(make_agent, tmp_path):
    agent = make_agent(f"http://127.0.0.1:{free_port()}")
    assert agent.ping() is False
    assert agent.pending() == 0


def test_a_ping_is_stamped_on_the_collectors_clock(make_agent, collector):
    collector.answer = lambda request: collector_json(accepted=True)
    agent = make_agent(collector.url, clock=CollectorClock(offset=3600.0))  # an hour ahead
    assert agent.ping() is True
    (request,) = ping_requests(collector)
    stamped = parse_timestamp(request.json()["timestamp"])
    assert abs(stamped - (utcnow() + timedelta(hours=1))) < timedelta(seconds=5)


def test_a_ping_the_collector_holds_is_given_up_within_the_ping_interval(make_agent, collector):
    collector.answer = lambda request: Reply(body=b'{"accepted": true}', delay=10)
    agent = make_agent(collector.url, ping_interval=1, read_timeout=15, send_timeout=30)
    started = time.monotonic()
    assert agent.ping() is False
    # Not the 15 s read_timeout of a heartbeat: the next ping is due.
    assert time.monotonic() - started < 5
    assert agent.ping_trouble.current.startswith("ping not delivered")
    assert agent.pending() == 0


def test_docker_going_away_is_told_once_and_its_return_once(engine, tmp_path, caplog):
    config = agent_config("http://127.0.0.1:9", tmp_path / "state", docker_host=engine.host)
    agent = Agent(config, keys.generate(config.key_path))

    def available(times: int = 1) -> list[bool]:
        return [agent.collect().agent.dockerAvailable for _ in range(times)]

    try:
        with caplog.at_level(logging.INFO, logger="agent.service"):
            assert available() == [True]
            engine.fail(500, on=LIST_PATH)
            assert available(3) == [False] * 3
            engine.fail(503, on=LIST_PATH)  # another reason, the same outage
            assert available() == [False]
            engine.failing = None
            assert available(2) == [True] * 2
            engine.fail(500, on=LIST_PATH)  # a second outage is told again
            assert available(2) == [False] * 2
    finally:
        agent.close()
    told = [r.getMessage() for r in caplog.records if r.name == "agent.service"]
    gone = "; heartbeats say dockerAvailable=false until Docker answers again"
    assert [message.endswith(gone) for message in told] == [True, False, True], told
    assert told[1] == "Docker is available again"
    assert "500" in told[0] and "500" in told[2]
