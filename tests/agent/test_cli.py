"""``tassium-agent`` as a worker owner runs it: exit codes and messages."""

import json

import pytest

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture
def agent(serve_collector, agent_process, dockerd):
    collector = serve_collector()
    return collector, agent_process(collector.url, start=False, docker_host=dockerd.host)


def test_status_is_healthy_with_a_key_docker_and_a_collector(agent):
    _, worker = agent
    done = worker.command("status")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BAD" not in done.stdout and "reachable" in done.stdout


def test_status_fails_and_names_an_unreachable_collector(agent):
    collector, worker = agent
    collector.stop()
    done = worker.command("status")
    assert done.returncode == 1
    assert "BAD reachable" in done.stdout


def test_once_prints_and_delivers_one_heartbeat(agent):
    collector, worker = agent
    done = worker.command("once")
    assert done.returncode == 0, done.stderr
    sent = json.loads(done.stdout)
    assert sent["walletAddress"] == worker.wallet and sent["agent"]["dockerAvailable"] is True
    assert "credited 1" in done.stderr


def test_keygen_refuses_to_replace_a_key(agent):
    _, worker = agent
    done = worker.command("keygen")
    assert done.returncode != 0 and "already exists" in done.stderr


def test_enroll_again_is_idempotent_and_a_new_key_is_refused(agent):
    _, worker = agent
    again = worker.command("enroll")
    assert again.returncode == 0 and "already enrolled" in again.stdout
    (worker.state_dir / "agent.key").unlink()
    assert worker.command("keygen").returncode == 0
    refused = worker.command("enroll")
    assert refused.returncode == 1 and "409" in refused.stderr


def test_run_without_a_key_says_to_run_keygen(agent):
    _, worker = agent
    (worker.state_dir / "agent.key").unlink()
    done = worker.command("run")
    assert done.returncode != 0 and "keygen" in done.stderr


def test_a_bad_setting_is_named(agent):
    _, worker = agent
    worker.config.write_text(worker.config.read_text() + "interval: often\n")
    done = worker.command("status")
    assert done.returncode != 0 and "interval" in done.stderr
