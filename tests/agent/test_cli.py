"""``tassium-agent`` as a worker owner runs it: exit codes and messages."""

import json

import httpx
import pytest

from tests.factories import Wallet

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


def test_without_docker_once_and_status_say_the_worker_is_not_paid(
    serve_collector, agent_process, tmp_path
):
    collector = serve_collector()
    worker = agent_process(
        collector.url,
        start=False,
        docker_host=f"unix://{tmp_path}/no-docker.sock",
        docker_timeout=1,
    )
    done = worker.command("once")
    # Taken by the collector, and earning nothing: a failure, in a sentence.
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["agent"]["dockerAvailable"] is False
    assert "this heartbeat was counted as downtime" in done.stderr
    assert "it is not paid, until Docker runs" in done.stderr
    status = worker.command("status")
    assert status.returncode == 1
    [docker] = [line for line in status.stdout.splitlines() if " docker " in line]
    assert docker.startswith("BAD") and "it is not paid, until Docker runs" in docker


def test_keygen_refuses_to_replace_a_key(agent):
    _, worker = agent
    done = worker.command("keygen")
    assert done.returncode != 0 and "already exists" in done.stderr


def test_enroll_again_is_idempotent_and_a_new_key_needs_the_wallets_signature(agent):
    _, worker = agent
    again = worker.command("enroll")
    assert again.returncode == 0 and "already enrolled" in again.stdout
    (worker.state_dir / "agent.key").unlink()
    assert worker.command("keygen").returncode == 0
    # Nobody signs: the new key is not enrolled, and the agent says until when it may be.
    unsigned = worker.command("enroll", "--wait", "1")
    assert unsigned.returncode == 1 and "no signature arrived in time" in unsigned.stderr
    printed = unsigned.stdout.split("run: tassium-agent enroll ")[1].split()[0]
    challenge = printed.removeprefix("--challenge=")
    # The owner signs it later, elsewhere, and hands the signature to the agent.
    message = httpx.get(f"{worker.collector_url}/workers/enroll/challenge/{challenge}").json()
    # Signed by another wallet: refused, and the key stays unenrolled.
    forged = Wallet().sign(message["message"])
    refused = worker.command("enroll", printed, "--signature", forged)
    assert refused.returncode == 1
    assert "signature refused (401): signature is not by wallet" in refused.stderr
    signature = worker.owner.sign(message["message"])
    signed = worker.command("enroll", printed, "--signature", signature)
    assert signed.returncode == 0, signed.stderr
    assert "replacing the key enrolled before" in signed.stdout


def test_enroll_prints_the_challenge_and_the_owners_page_and_waits_for_it(agent):
    _, worker = agent
    (worker.state_dir / "agent.key").unlink()
    assert worker.command("keygen").returncode == 0
    done = worker.enroll()  # the owner signs on the page while the agent waits
    assert done.returncode == 0, done.stderr
    assert f"To let this machine earn uptime for {worker.wallet}" in done.stdout
    assert f"    Enroll a Tassium worker at {worker.collector_url}" in done.stdout
    assert f"{worker.collector_url}/enroll/" in done.stdout
    assert "replacing the key enrolled before" in done.stdout


def test_a_challenge_id_that_starts_with_a_dash_is_taken_as_the_id(agent):
    # One id in 64 starts with "-"; the printed command must still work for it.
    _, worker = agent
    done = worker.command("enroll", "--challenge=-" + "a" * 42, "--signature", "0x00")
    assert done.returncode == 1 and "no enrollment challenge -aaa" in done.stderr


def test_enroll_half_given_is_a_usage_error(agent):
    _, worker = agent
    done = worker.command("enroll", "--signature", "0x00")
    assert done.returncode == 2 and "--challenge and --signature go together" in done.stderr


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
