"""Every mistake an owner can make is one sentence saying what to do, never a traceback:
run through the real console program, as the owner meets it."""

import importlib.metadata
import os
import stat
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from agent.cli import COMMANDS
from agent.config import load_config
from agent.errors import ConfigError
from tests.agent.fake_collector import FakeCollector, collector_json
from tests.factories import new_wallet
from tests.programs import console_script

API_TOKEN = "t" * 32


def agent(config: Path, *args: str, prefix: tuple[str, ...] = (), code: str = ""):
    """``tassium-agent --config CONFIG ARGS``: the installed console program, as the owner
    runs it (under ``prefix``, a wrapper command). ``code`` runs first in the same process,
    from a ``sitecustomize`` module, to stage what the machine cannot (a missing module)."""
    env = dict(os.environ)
    if code:
        site = config.parent / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(code)
        env["PYTHONPATH"] = str(site)
    return subprocess.run(
        [*prefix, console_script("tassium-agent"), "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
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


def as_another_user(directory: Path) -> tuple[str, ...]:
    """A prefix under which ``directory`` (0700, given to nobody) belongs to someone else:
    root without the capabilities that let it ignore file permissions."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chown(directory, NOBODY, NOBODY)
    return ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")


NOBODY = 65534
EVERY_COMMAND = ["keygen", "enroll", "run", "once", "status"]
# What each kind of unusable state_dir is called, and so what the owner is told to do.
SAID = {
    "cannot-be-created": "cannot be created: {tmp}/a-file is a file, not a directory",
    "not-a-directory": "{state} is a file, not a directory: point state_dir at a directory",
    "read-only": "{state} is on a read-only file system: point state_dir at a writable",
    "parent-read-only": "cannot be created: {tmp}/ro is on a read-only file system",
    "another-user's": "{state} belongs to nobody, and root may not",
}


# 25 programs started: slow, so the lowest-versions run (which keeps CI short) skips them.
@pytest.mark.slow
@pytest.mark.parametrize("kind", list(SAID))
@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_an_unusable_state_dir_is_a_sentence(tmp_path, kind, command):
    prefix: tuple[str, ...] = ()
    state = tmp_path / "state"
    if kind == "cannot-be-created":
        (tmp_path / "a-file").write_text("")
        state = tmp_path / "a-file" / "state"
    elif kind == "not-a-directory":
        state.write_text("")
    elif kind == "read-only":
        prefix = read_only(state)
    elif kind == "parent-read-only":
        prefix = read_only(tmp_path / "ro")
        state = tmp_path / "ro" / "state"
    else:
        prefix = as_another_user(state)
    done = agent(write_config(tmp_path, state_dir=str(state)), command, prefix=prefix)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output
    if kind == "read-only" and command == "enroll":
        # Enrolling only reads the key, which a read-only directory still holds.
        said = f"no key at {state}/agent.key: run tassium-agent keygen"
    else:
        said = SAID[kind].format(tmp=tmp_path, state=state)
    assert said in output
    if command == "status":
        assert any(line.startswith("BAD state") for line in done.stdout.splitlines()), output
    else:
        assert done.stderr.startswith("tassium-agent: ") and len(done.stderr.splitlines()) == 1


def test_keygen_creates_a_missing_state_dir_for_its_owner_only(tmp_path):
    state = tmp_path / "deep" / "state"
    done = agent(write_config(tmp_path, state_dir=str(state)), "keygen")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(state.stat().st_mode) == 0o700 and (state / "agent.key").is_file()


@pytest.mark.parametrize("command", ["once", "run", "status", "enroll"])
def test_a_missing_state_dir_is_made_by_keygen_and_no_other_command(tmp_path, command):
    state = tmp_path / "state"
    done = agent(write_config(tmp_path, state_dir=str(state)), command)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    output = done.stdout + done.stderr
    assert f"state_dir {state} does not exist: run tassium-agent keygen" in output
    assert not state.exists()


def test_an_error_no_check_foresaw_still_names_the_path_in_one_line(tmp_path):
    config = write_config(tmp_path, state_dir=str(tmp_path / "state"))
    # No known path reaches main()'s last resort any more: stage one where a key is written.
    code = (
        "import agent.keys\n"
        "def refuse(path):\n"
        "    raise PermissionError(13, 'Permission denied', str(path))\n"
        "agent.keys.generate = refuse\n"
    )
    done = agent(config, "keygen", code=code)
    assert done.returncode == 1
    assert done.stderr == f"tassium-agent: {tmp_path}/state/agent.key: Permission denied\n"


def test_an_unquoted_hex_wallet_is_told_to_be_quoted(tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_text(
        "collector_url: http://127.0.0.1:9\nwallet: 0xC6592b9d0b8bc6f1a5e5fd8ce0b7cd1a2b3c4d5e\n"
    )
    with pytest.raises(ConfigError, match="put the value in quotes"):
        load_config(path, environ={})
    done = agent(path, "status")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert (
        f"{path}: wallet: must be text, but YAML read it as a number: put the value in quotes, "
        'as in wallet: "0xC6592b9d0b8bc6f1a5e5fd8ce0b7cd1a2b3c4d5e"'
    ) in done.stderr


def test_enroll_says_when_it_replaced_a_lost_key(serve_collector, tmp_path):
    collector = serve_collector(api_token=API_TOKEN)
    config = write_config(tmp_path, collector_url=collector.url, state_dir=str(tmp_path / "s"))
    assert agent(config, "keygen").returncode == 0
    wallet = yaml.safe_load(config.read_text())["wallet"]

    def token() -> str:
        return httpx.post(
            f"{collector.url}/workers/tokens",
            json={"walletAddress": wallet},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=10,
        ).json()["token"]

    first = agent(config, "enroll", "--token", token())
    assert first.returncode == 0 and first.stdout.startswith("enrolled 0x"), first.stderr
    again = agent(config, "enroll")
    assert "is already enrolled with key" in again.stdout
    (tmp_path / "s" / "agent.key").unlink()  # lost
    assert agent(config, "keygen").returncode == 0
    replaced = agent(config, "enroll", "--token", token())
    assert replaced.returncode == 0, replaced.stderr
    assert "replacing the key enrolled before" in replaced.stdout
    assert "already" not in replaced.stdout


@pytest.mark.parametrize(
    ("code", "token", "said"),
    [
        (201, None, "enrolled {wallet} with key SHA256:"),
        (200, None, "{wallet} is already enrolled with key SHA256:"),
        (200, "tsk_" + "a" * 43, "replacing the key enrolled before"),
    ],
)
def test_enroll_reads_an_older_collectors_answer_by_its_status_and_the_token(
    tmp_path, code, token, said
):
    # A collector from before the answer's "enrollment" field, which the real one now has,
    # and before wallet-signed enrollment: it has no challenges, and enrolls on its own word.
    def answer(request):
        if request.path == "/workers/enroll/challenge":
            return collector_json(404, error="no such route")
        return collector_json(code, walletAddress="0x")

    with FakeCollector(answer) as old:
        config = write_config(tmp_path, collector_url=old.url, state_dir=str(tmp_path / "s"))
        assert agent(config, "keygen").returncode == 0
        done = agent(config, "enroll", *(("--token", token) if token else ()))
    assert done.returncode == 0, done.stderr
    wallet = yaml.safe_load(config.read_text())["wallet"]
    assert said.format(wallet=wallet) in done.stdout


def without(module: str) -> str:
    """Code that makes ``module`` unimportable (None in sys.modules: importing it raises
    ModuleNotFoundError), as in an install that lacks it."""
    return f"import sys\nsys.modules[{module!r}] = None\n"


@pytest.mark.parametrize(
    ("library", "command"), [("httpx", "once"), ("docker", "status"), ("apscheduler", "run")]
)
def test_an_install_without_the_agents_libraries_says_what_to_install(tmp_path, library, command):
    config = write_config(tmp_path, state_dir=str(tmp_path / "s"))
    assert agent(config, "keygen").returncode == 0
    done = agent(config, command, code=without(library))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"the Python package {library!r} is missing" in done.stderr
    assert "pip install 'tassium[agent]'" in done.stderr


def test_keygen_needs_only_the_base_install(tmp_path):
    config = write_config(tmp_path, state_dir=str(tmp_path / "s"))
    code = "".join(without(m) for m in ("httpx", "apscheduler", "docker", "requests"))
    done = agent(config, "keygen", code=code)
    assert done.returncode == 0, done.stderr


def test_a_missing_module_of_the_agent_itself_is_a_bug_and_keeps_its_traceback(tmp_path):
    config = write_config(tmp_path, state_dir=str(tmp_path / "s"))
    assert agent(config, "keygen").returncode == 0
    done = agent(config, "once", code=without("agent.sender"))
    assert done.returncode == 1 and "Traceback" in done.stderr
    assert "tassium[agent]" not in done.stderr


def test_help_is_plain_text_and_names_the_configuration():
    done = subprocess.run(
        [console_script("tassium-agent"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert "`" not in done.stdout  # no reStructuredText markup
    assert "/etc/tassium/agent.yaml" in done.stdout and "TASSIUM_CONFIG" in done.stdout
    assert "TASSIUM_COLLECTOR_URL" in done.stdout
    shown = " ".join(done.stdout.split())  # argparse wraps to the terminal's width
    for name, (_, help_text) in COMMANDS.items():
        assert f"{name} {help_text}" in shown


def test_version_is_the_installed_distributions():
    done = subprocess.run(
        [console_script("tassium-agent"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"tassium-agent {importlib.metadata.version('tassium')}\n"


@pytest.mark.parametrize("flag", ["-h", "--help"])
@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_h_and_help_show_every_commands_help(flag, command):
    args = [command] if command else []
    done = subprocess.run(
        [console_script("tassium-agent"), *args, flag], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: tassium-agent {command or ''}".rstrip())


def test_a_mistyped_variable_is_warned_about_once_with_the_one_meant(tmp_path, monkeypatch):
    config = write_config(tmp_path, state_dir=str(tmp_path / "s"))
    monkeypatch.setenv("TASSIUM_INTERVALL", "60")
    monkeypatch.setenv("TASSIUM_API_TOKEN", API_TOKEN)  # the collector's: no mistake
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)  # the plain format, not journald's
    done = agent(config, "keygen")
    assert done.returncode == 0, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.endswith(
        " WARNING agent: TASSIUM_INTERVALL is not a setting of the agent: it is ignored; "
        "did you mean TASSIUM_INTERVAL?"
    )
