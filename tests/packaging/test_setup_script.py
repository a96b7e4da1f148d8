"""The install script on this machine, without systemd: its options are checked before
anything happens, and refusals are clear. Installing for real is in test_install_under_systemd."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "packaging" / "setup.sh"
WALLET = "0x52908400098527886E0F7030069857D2E4169EE7"
TOKEN = "tsk_" + "A" * 43
GOOD = ["--wallet", WALLET, "--collector", "http://127.0.0.1:8000"]


def run_script(*args: str, cwd: Path, user: str | None = None) -> subprocess.CompletedProcess:
    command = ["bash", str(SCRIPT), *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_the_script_is_valid_bash():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="needs shellcheck")
def test_shellcheck_finds_nothing():
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_help_describes_the_options(tmp_path):
    result = run_script("--help", cwd=tmp_path)
    assert result.returncode == 0
    for option in ("--wallet", "--token", "--collector", "--no-docker", "--uninstall"):
        assert option in result.stdout


def test_an_unknown_option_is_refused(tmp_path):
    result = run_script("--wallet", WALLET, "--frobnicate", cwd=tmp_path)
    assert result.returncode == 1
    assert "unknown option: --frobnicate" in result.stderr


def test_an_option_without_its_value_is_refused(tmp_path):
    result = run_script("--wallet", cwd=tmp_path)
    assert result.returncode == 1
    assert "--wallet needs a value" in result.stderr


INJECTIONS = [
    "$(touch MARKER)",
    "`touch MARKER`",
    "'; touch MARKER; '",
    '"; touch MARKER; "',
    "x\ntouch MARKER",
    "x && touch MARKER",
    "x | touch MARKER",
]


@pytest.mark.parametrize("payload", INJECTIONS)
@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--wallet", "the wallet must be 0x and 40 hexadecimal digits"),
        ("--collector", "the collector URL must be http(s)://host"),
        ("--token", "the token must be an enrollment token"),
        ("--package", "the package must be a pip requirement"),
    ],
)
def test_a_bad_value_is_refused_before_anything_runs(tmp_path, option, message, payload):
    args = dict(zip(GOOD[::2], GOOD[1::2], strict=True))
    args[option] = payload
    result = run_script(*[part for pair in args.items() for part in pair], cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert not (tmp_path / "MARKER").exists()


def test_an_unknown_wallet_format_is_refused(tmp_path):
    result = run_script(*GOOD, "--wallet-format", "$(touch MARKER)", cwd=tmp_path)
    assert result.returncode == 1
    assert "unknown wallet format" in result.stderr
    assert not (tmp_path / "MARKER").exists()


def test_a_stellar_wallet_needs_the_stellar_format(tmp_path):
    stellar = "GBRPYHIL2CI3FNQ4BXLFMNDLFJUNPU2HY3ZMFSHONUCEOASW7QC7OX2H"
    refused = run_script("--wallet", stellar, "--collector", "http://x", cwd=tmp_path)
    assert "the wallet must be 0x and 40 hexadecimal digits" in refused.stderr
    accepted = run_script(
        "--wallet", stellar, "--wallet-format", "stellar", "--collector", "http://x", cwd=tmp_path
    )
    assert "wallet" not in accepted.stderr


def test_a_wallet_of_the_wrong_length_is_refused(tmp_path):
    result = run_script("--wallet", WALLET[:-1], "--collector", "http://x", cwd=tmp_path)
    assert result.returncode == 1
    assert "the wallet must be 0x and 40 hexadecimal digits" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_it_must_run_as_root(tmp_path):
    result = run_script(*GOOD, "--token", TOKEN, cwd=tmp_path, user="65534")
    assert result.returncode == 1
    assert "run me as root" in result.stderr


@pytest.mark.skipif(Path("/run/systemd/system").is_dir(), reason="this machine runs systemd")
@pytest.mark.skipif(os.geteuid() != 0, reason="the root check comes first")
def test_it_refuses_a_machine_without_systemd(tmp_path):
    result = run_script(*GOOD, cwd=tmp_path)
    assert result.returncode == 1
    assert "systemd is not running" in result.stderr
