"""The install script on this machine, without systemd: its options are checked before
anything happens, and refusals are clear. Installing for real is in test_install_under_systemd."""

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from collector.api import ApiError
from collector.config import RULES
from collector.enrollment import validate_token
from collector.setup import SCRIPT_PATTERNS, render
from protocol.wallets import InvalidWallet, normalize_wallet
from tests.packaging.installer import installer
from tests.protocol.pattern_cases import CASES, INJECTIONS

SCRIPT = Path(__file__).parents[2] / "packaging" / "setup.sh"
WALLET = "0x52908400098527886E0F7030069857D2E4169EE7"
TOKEN = "tsk_" + "A" * 43
GOOD = ["--wallet", WALLET, "--collector", "http://127.0.0.1:8000"]


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``bash setup.sh ARGS`` as root, from the checkout. A normal user's prologue would ask
    sudo first (test_setup_under_sh tries that): the installer is then run as it would be."""
    if os.geteuid() == 0:
        command, text = ["bash", str(SCRIPT), *args], None
    else:
        command = ["bash", "-s", "--", str(SCRIPT.parent), *args]
        text = installer(SCRIPT.read_text())
    return subprocess.run(
        command, input=text, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("shell", ["sh", "dash", "bash"])
def test_the_script_is_valid_sh_and_bash(shell):
    result = subprocess.run([shell, "-n", str(SCRIPT)], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")


def test_the_installer_is_valid_bash():
    # The whole script's check never parses the here-document: this one does.
    result = subprocess.run(
        ["bash", "-n"], input=installer(SCRIPT.read_text()), capture_output=True, text=True
    )
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="needs shellcheck")
def test_shellcheck_finds_nothing():
    # The prologue as sh (the shebang says so), then the installer, which it does not read.
    for command, text in [
        (["shellcheck", str(SCRIPT)], None),
        (["shellcheck", "--shell=bash", "-"], installer(SCRIPT.read_text())),
    ]:
        result = subprocess.run(command, input=text, capture_output=True, text=True)
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
def test_the_installer_must_run_as_root(tmp_path):
    # The prologue sees to that; the installer checks again, run without it as here.
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-s", "--", ""]
        + [*GOOD, "--token", TOKEN],
        input=installer(SCRIPT.read_text()),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "run me as root" in result.stderr


@pytest.mark.skipif(Path("/run/systemd/system").is_dir(), reason="this machine runs systemd")
@pytest.mark.skipif(os.geteuid() != 0, reason="the root check comes first")
def test_it_refuses_a_machine_without_systemd(tmp_path):
    result = run_script(*GOOD, cwd=tmp_path)
    assert result.returncode == 1
    assert "systemd is not running" in result.stderr


# --- the rules are the collector's ----------------------------------------------------------

# The table of values for each rule, and the variable the script reads that value from.
FIELDS = {
    "COLLECTOR_URL": "COLLECTOR_URL",
    "EVM_WALLET": "WALLET",
    "STELLAR_WALLET": "WALLET",
    "ENROLLMENT_TOKEN": "TOKEN",
    "PIP_REQUIREMENT": "PACKAGE",
}


def script_assignments(script: str) -> dict[str, str]:
    """Each ``NAME=value`` line of the script's top level, as the shell reads its value."""
    found = {}
    for line in script.splitlines():
        name, equals, value = line.partition("=")
        if equals and name.isidentifier() and name.isupper():
            (found[name],) = shlex.split(value)
    return found


def test_the_script_carries_the_collectors_own_patterns():
    script = SCRIPT.read_text()
    assignments = script_assignments(script)
    assert {k: v for k, v in assignments.items() if k.endswith("_RE")} == SCRIPT_PATTERNS
    # The collector serves the file with its patterns filled in: that changes nothing.
    assert render(script, SCRIPT_PATTERNS) == script


def test_the_script_checks_values_only_through_those_patterns():
    script = SCRIPT.read_text()
    # One =~, in the function that anchors a pattern variable; no rule of its own elsewhere.
    assert script.count("=~") == 1
    for name in SCRIPT_PATTERNS:
        assert f'"${name}"' in script.partition("\nvalidate_options() {")[2].partition("\n}")[0]


def python_accepts(rule: str, value: str) -> bool:
    """What the collector says of a value: the very checks it applies before serving one."""
    try:
        if rule == "COLLECTOR_URL":
            return RULES["public_url"].check(value)
        if rule == "PIP_REQUIREMENT":
            return RULES["agent_package"].check(value)
        if rule == "ENROLLMENT_TOKEN":
            validate_token(value)
        else:
            normalize_wallet(value, "stellar" if rule == "STELLAR_WALLET" else "evm")
    except (ApiError, InvalidWallet):
        return False
    return True


def script_accepts(pairs: list[tuple[str, str]], cwd: Path) -> list[bool]:
    """Whether the script's own validate_options passes, for each (variable, value) with the
    other values good; one bash runs the script's functions (not main) for them all."""
    script = installer(SCRIPT.read_text())
    functions = script.removesuffix('main "$@"\n')
    assert functions != script
    driver = f"""
check() {{
    COLLECTOR_URL=http://127.0.0.1:8000 WALLET={WALLET} WALLET_FORMAT=evm TOKEN='' PACKAGE=''
    [[ $1 != STELLAR ]] || {{ WALLET_FORMAT=stellar; set -- WALLET "$2"; }}
    printf -v "$1" '%s' "$2"
    validate_options
}}
while IFS= read -r -d '' name && IFS= read -r -d '' value; do
    if (check "$name" "$value") >/dev/null 2>&1; then printf 1; else printf 0; fi
done
"""
    result = subprocess.run(
        ["bash", "-c", functions + driver, "setup.sh"],
        input="".join(f"{name}\0{value}\0" for name, value in pairs).encode(),
        cwd=cwd,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, b"")
    return [flag == "1" for flag in result.stdout.decode()]


def test_the_script_and_the_collector_agree_on_every_value(tmp_path):
    cases = [
        (rule, value)
        for rule, (_, table) in CASES.items()
        for value in table
        # Empty, a token or package is not given at all: see the next test.
        if value or rule in ("COLLECTOR_URL", "EVM_WALLET", "STELLAR_WALLET")
    ]
    variables = [
        ("STELLAR" if rule == "STELLAR_WALLET" else FIELDS[rule], value) for rule, value in cases
    ]
    by_script = script_accepts(variables, tmp_path)
    by_python = [python_accepts(rule, value) for rule, value in cases]
    disagreements = [
        (rule, value, script, python)
        for (rule, value), script, python in zip(cases, by_script, by_python, strict=True)
        if script != python
    ]
    assert disagreements == []
    # The table says which values are good: both sides follow it.
    assert by_python == [CASES[rule][1][value] for rule, value in cases]
    assert ("COLLECTOR_URL", "http://a:b:c") in cases
    assert not (tmp_path / "MARKER").exists()


def test_an_empty_token_or_package_is_one_not_given(tmp_path):
    assert script_accepts([("TOKEN", ""), ("PACKAGE", "")], tmp_path) == [True, True]
