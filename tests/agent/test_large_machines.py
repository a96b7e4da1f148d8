"""A machine running thousands of containers is credited (issue 22): its heartbeat lists the
first MAX_LISTED of them (running ones first, then by name) and says how many it runs, so the
body fits the collector's default limit, where listing them all would be refused with 413.

Agent.collect() is given its containers directly here; the engine's side, which inspects and
measures only the containers a heartbeat lists, is tested with 3,000 on the fake engine."""

import json
import random
from dataclasses import replace
from datetime import timedelta
from types import SimpleNamespace

import pytest

from agent.containers import ContainerStats, survey
from agent.engine import Engine
from agent.service import Agent
from collector.config import CollectorConfig
from protocol.heartbeat import MAX_LISTED, SIGNATURE_HEADER, Container, Heartbeat, System, sign
from protocol.times import utcnow
from tests.factories import FakeWorker, agent_config, machine

MACHINE_CONTAINERS = 3000
DEFAULT_MAX_BODY_BYTES = CollectorConfig.max_body_bytes


def deployment_container(n: int) -> Container:
    """A container as a Tassium deployment runs it: one in three has stopped."""
    return Container(
        containerName=f"app-{n:04d}",
        port=f"0.0.0.0:{30000 + n}->3000/tcp",
        id=f"{n:04x}" * 16,
        image=f"tassium/app-{n:04d}:latest",
        state="exited" if n % 3 == 0 else "running",
        health="healthy",
        cpuPercent=0.25,
        memUsageMb=48.5,
    )


@pytest.fixture
def containers() -> list[Container]:
    made = [deployment_container(n) for n in range(MACHINE_CONTAINERS)]
    random.Random(22).shuffle(made)  # in whatever order the engine lists them
    return made


@pytest.fixture
def collected(tmp_path, monkeypatch, containers):
    """``collected(wallet, key)``: the heartbeat Agent.collect() takes on that machine."""

    def collect(wallet: str, key) -> Heartbeat:
        found = SimpleNamespace(containers=containers, docker_root=None, total=len(containers))
        monkeypatch.setattr("agent.service.survey", lambda *args, **kwargs: found)
        agent = Agent(agent_config("http://127.0.0.1:9", tmp_path / "state", wallet=wallet), key)
        try:
            return agent.collect()
        finally:
            agent.close()

    return collect


def post(client, worker: FakeWorker, beat: Heartbeat):
    body = beat.to_body()
    headers = {SIGNATURE_HEADER: sign(worker.key, body), "Content-Type": "application/json"}
    return client.post("/heartbeat", data=body, headers=headers)


def test_all_of_them_in_one_heartbeat_would_be_refused(containers):
    # The problem: about 250 bytes a container, 3,000 of them, over the 256 KiB default.
    beat = Heartbeat("0x" + "a" * 40, utcnow(), tuple(containers))
    assert len(beat.to_body()) > DEFAULT_MAX_BODY_BYTES == 256 * 1024


def test_the_agent_lists_the_first_running_ones_and_counts_them_all(collected, containers):
    beat = collected("0x" + "a" * 40, FakeWorker().key)
    running = sorted(c.containerName for c in containers if c.state == "running")
    assert [c.containerName for c in beat.containers] == running[:MAX_LISTED]
    assert beat.container_count == MACHINE_CONTAINERS
    body = json.loads(beat.to_body())
    assert (len(body["containers"]), body["containerCount"]) == (MAX_LISTED, MACHINE_CONTAINERS)
    assert len(beat.to_body()) < DEFAULT_MAX_BODY_BYTES // 4


def test_a_large_machine_is_accepted_credited_and_shown_with_its_total(
    collected, client, operator, history
):
    # The collector's defaults (max_body_bytes 256 KiB, capacity_max_containers 100).
    worker = FakeWorker()
    assert worker.enroll(client).status_code == 201
    history.known(worker.wallet)
    beat = replace(collected(worker.wallet, worker.key), system=None)
    now = utcnow().replace(microsecond=0)
    first = post(client, worker, replace(beat, timestamp=now - timedelta(minutes=6)))
    assert first.status_code == 200, first.json
    second = post(client, worker, replace(beat, timestamp=now - timedelta(minutes=1)))
    assert second.status_code == 200, second.json
    assert (second.json["credited"], second.json["creditsEarned"]) == (True, 100)

    # With the machine's facts, 100 containers count (capacity_max_containers), not 3,000.
    facts = replace(beat, timestamp=now, system=System(**machine(cpuUsagePercent=1.0)))
    third = post(client, worker, facts)
    assert third.status_code == 200, third.json
    # 10 + 5 × 4 + 3 × 16 + 200 / 10 + 15 × 100 = 1,598 per 300 s, for the minute since.
    assert third.json["creditsEarned"] == 319.6

    shown = operator.get(f"/workers/{worker.wallet}").json
    assert shown["containerCount"] == MACHINE_CONTAINERS
    assert len(shown["containers"]) == MAX_LISTED
    assert shown["credits"] == 419.6


def test_of_3000_on_the_engine_only_those_listed_are_inspected_and_all_counted(engine):
    for n in random.Random(22).sample(range(MACHINE_CONTAINERS), MACHINE_CONTAINERS):
        engine.add(f"app-{n:04d}", state="exited" if n % 3 == 0 else "running")
    client = Engine(engine.host, 10)
    try:
        found = survey(client, stats=ContainerStats())
    finally:
        client.close()
    running = sorted(f"app-{n:04d}" for n in range(MACHINE_CONTAINERS) if n % 3)
    assert [c.containerName for c in found.containers] == running[:MAX_LISTED]
    assert found.total == MACHINE_CONTAINERS
    inspected = [p for p in engine.paths if p.endswith("/json") and "/containers/" in p]
    measured = [p for p in engine.paths if p.endswith("/stats")]
    # The listing, then one inspect and one stats call for each container listed: a tick of
    # a large machine costs what a tick of a hundred does.
    assert len(inspected) == MAX_LISTED + 1 and len(measured) == MAX_LISTED
