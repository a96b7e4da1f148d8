"""Every mistake an owner can make is one sentence saying what to do, never a traceback:
run through the real console program, as the owner meets it."""

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from agent.config import load_config
from agent.errors import ConfigError
from tests.factories import new_wallet

API_TOKEN = "t" * 32


def agent(config: Path, *args: str, prefix: tuple[str, ...] = (), code: str = ""):
    """``tassium-agent --config CONFIG ARGS``, after running ``code`` in the same process."""
    program = f"{code}\nfrom agent.cli import main; main()"
    return subprocess.run(
        [*prefix, sys.executable, "-c", program, "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_config(tmp_path: Path, **settings) -> Path:
    path = tmp_path / "agent.yaml"
    values = {
        "collector_url": "http://127.0.0.1:9",
        "wallet": new_wallet(),
        "docker_host": f"unix://{tmp_path}/no-docker.sock",
        **settings,
    }
    path.write_text(yaml.safe_dump(values))
    return path


def read_only(directory: Path) -> tuple[str, ...]:
    """A prefix that runs a command with ``directory`` mounted read-only (a private mount
    namespace: the test's own view of it is untouched)."""
    directory.mkdir(parents=True, exist_ok=True)
    script = 'mount -t tmpfs -o ro,size=64k tmpfs "$0" && exec "$@"'
    return ("unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(directory))


@pytest.mark.parametrize("kind", ["cannot-be-created", "not-a-directory", "read-only"])
@pytest.mark.parametrize("command", ["keygen", "once", "run", "status", "enroll"])
def test_an_unusable_state_dir_is_a_sentence(tmp_path, kind, command):
    prefix: tuple[str, ...] = ()
    if kind == "cannot-be-created":
        (tmp_path / "a-file").write_text("")
        state = tmp_path / "a-file" / "state"
    elif kind == "not-a-directory":
        state = tmp_path / "state"
        state.write_text("")
    else:
        state = tmp_path / "state"
        prefix = read_only(state)
    done = agent(write_config(tmp_path, state_dir=str(state)), command, prefix=prefix)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output
    assert str(state) in output
    if command == "status":
        assert any(line.startswith("BAD state") for line in done.stdout.splitlines()), output
    else:
        assert done.stderr.startswith("tassium-agent: ") and len(done.stderr.splitlines()) == 1


def test_status_creates_no_missing_state_dir(tmp_path):
    state = tmp_path / "state"
    done = agent(write_config(tmp_path, state_dir=str(state)), "status")
    assert done.returncode == 1 and "does not exist" in done.stdout
    assert not state.exists()


def test_an_unquoted_hex_wallet_is_told_to_be_quoted(tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_text(
        "collector_url: http://127.0.0.1:9\nwallet: 0xC6592b9d0b8bc6f1a5e5fd8ce0b7cd1a2b3c4d5e\n"
    )
    with pytest.raises(ConfigError, match="put the value in quotes"):
        load_config(path, environ={})
    done = agent(path, "status")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "wallet: must be text, but YAML read it as a number" in done.stderr


def test_enroll_says_when_it_replaced_a_lost_key(serve_collector, tmp_path):
    collector = serve_collector(api_token=API_TOKEN)
    config = write_config(tmp_path, collector_url=collector.url, state_dir=str(tmp_path / "s"))
    for step in ("keygen", "enroll"):
        assert agent(config, step).returncode == 0
    again = agent(config, "enroll")
    assert "is already enrolled with key" in again.stdout
    (tmp_path / "s" / "agent.key").unlink()  # lost
    assert agent(config, "keygen").returncode == 0
    wallet = yaml.safe_load(config.read_text())["wallet"]
    token = httpx.post(
        f"{collector.url}/workers/tokens",
        json={"walletAddress": wallet},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        timeout=10,
    ).json()["token"]
    replaced = agent(config, "enroll", "--token", token)
    assert replaced.returncode == 0, replaced.stderr
    assert "replacing the key enrolled before" in replaced.stdout
    assert "already" not in replaced.stdout


@pytest.mark.parametrize("missing", ["httpx", "apscheduler", "docker"])
def test_an_install_without_the_agent_extra_says_which_to_install(tmp_path, missing):
    config = write_config(tmp_path, state_dir=str(tmp_path / "s"))
    assert agent(config, "keygen").returncode == 0  # the base install is enough for a key
    # None in sys.modules: importing it raises ModuleNotFoundError, as when it is absent.
    done = agent(config, "once", code=f"import sys; sys.modules[{missing!r}] = None")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{missing} is not installed" in done.stderr
    assert "pip install 'tassium[agent]'" in done.stderr


def test_help_is_plain_text_and_names_the_configuration(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", "from agent.cli import main; main()", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "``" not in done.stdout and "/etc/tassium/agent.yaml" in done.stdout
    assert "TASSIUM_COLLECTOR_URL" in done.stdout
    for command in ("run", "once", "status", "enroll", "keygen"):
        assert command in done.stdout
