"""The owner's line as the Tassium worker client shows it, ``curl -s '…/api/setup?wallet=G…' | sh``:
the served script under sh (dash), run by a normal user, hands its bash installer to
``sudo bash``. Here ``sudo`` is a stand-in that records each call and runs the command as the
same user, so nothing becomes root and the installer stops at its own root check; the real
sudo under systemd is in test_install_under_systemd."""

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factories import new_stellar_wallet
from tests.packaging.installer import installer

SCRIPT = Path(__file__).parents[2] / "packaging" / "setup.sh"
# What the prologue and the installer's first steps run, besides the shells' builtins.
TOOLS = ("id", "dirname", "cat", "tee", "bash", "dash")
# The user the script runs as: nobody when the tests run as root, else the tests' own.
USER = pwd.getpwuid(65534 if os.geteuid() == 0 else os.geteuid()).pw_name
NO_SUDO = (
    "tassium setup: error: installing the agent needs root, and sudo is not installed: "
    f"run this line as root, or install sudo and let {USER} use it\n"
)
SUDO_REFUSED = (
    f"tassium setup: error: installing the agent needs root, and sudo did not let {USER} "
    "become root (not allowed, or no password typed at a terminal): "
    "run this line as root, or as a user sudo allows\n"
)
# Stands in for sudo: each call's arguments (NUL-terminated) and stdin go to files numbered
# in order; -v answers as the test chose; anything else runs as this same user.
FAKE_SUDO = """#!/bin/sh
n=$(ls {record} | wc -l)
printf '%s\\0' "$@" >{record}/call-$n
if [ "$1" = -v ]; then
    [ {allow} = yes ] && exit 0
    echo "Sorry, user $(id -un) may not run sudo on this host." >&2
    exit 1
fi
tee {record}/stdin-$n | "$@"
"""


class Place:
    """A directory anyone can read: a bin directory with TOOLS (and, when installed, the
    stand-in sudo), and a record of what it was called with."""

    def __init__(self, root: Path):
        self.root = root
        self.tools = root / "tools"
        self.sudo_dir = root / "sudo"
        self.record = root / "record"
        for directory in (self.tools, self.sudo_dir, self.record):
            directory.mkdir()
        self.record.chmod(0o777)  # the stand-in runs as the user, who writes there
        for tool in TOOLS:
            found = shutil.which(tool)
            assert found, f"the tests need {tool}"
            (self.tools / tool).symlink_to(found)
        (self.tools / "sh").symlink_to(shutil.which("dash"))
        # ls and wc only for the stand-in: the prologue must do without them.
        for tool in ("ls", "wc"):
            (self.sudo_dir / tool).symlink_to(shutil.which(tool))

    def install_sudo(self, *, allow: bool = True) -> None:
        sudo = self.sudo_dir / "sudo"
        sudo.write_text(FAKE_SUDO.format(record=self.record, allow="yes" if allow else "no"))
        sudo.chmod(0o755)

    def run(self, command: list[str], script: str | None = None) -> subprocess.CompletedProcess:
        """``command`` as a normal user (nobody, when the tests run as root) with only this
        place on PATH, reading ``script`` on stdin as from ``curl … |``."""
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv") or "setpriv"
            command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        return subprocess.run(
            command,
            input=script,
            cwd=self.root,
            env={"PATH": f"{self.sudo_dir}:{self.tools}", "LANG": "C.UTF-8"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def sudo_calls(self) -> list[list[str]]:
        calls = sorted(self.record.glob("call-*"), key=lambda path: int(path.name[5:]))
        return [call.read_text().split("\0")[:-1] for call in calls]

    def sudo_stdin(self, call: int) -> str:
        return (self.record / f"stdin-{call}").read_text()


@pytest.fixture
def place() -> Iterator[Place]:
    # Not tmp_path: the user the script runs as must reach it, and pytest's is root's only.
    root = Path(tempfile.mkdtemp(prefix="tassium-sh-"))
    root.chmod(0o755)
    try:
        yield Place(root)
    finally:
        shutil.rmtree(root)


@pytest.fixture
def served(make_app) -> tuple[str, str]:
    """A Stellar collector's script for a G… wallet, as /api/setup serves it."""
    wallet = new_stellar_wallet()
    client = make_app(wallet_format="stellar").test_client()
    response = client.get(f"/api/setup?wallet={wallet}")
    assert response.status_code == 200
    return wallet, response.get_data(as_text=True)


def skip_unless_a_user_can_be_made_of_root():
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to run as a normal user")


def test_the_owners_line_hands_the_installer_to_bash_through_sudo(place, served):
    skip_unless_a_user_can_be_made_of_root()
    wallet, script = served
    place.install_sudo()
    result = place.run(["sh"], script)
    # sudo first checks the user may become root, then runs bash on the installer: the
    # served one, its values as the collector filled them in, byte for byte.
    assert place.sudo_calls() == [["-v"], ["bash", "-s", "--", ""]]
    assert place.sudo_stdin(1) == installer(script)
    assert f"WALLET={wallet}\nWALLET_FORMAT=stellar\n" in place.sudo_stdin(1)
    # The installer ran under bash, took its values as good and stopped where a real sudo
    # would have made it root.
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "tassium setup: error: run me as root (curl ... | sh asks sudo)\n"


def test_options_after_dash_s_reach_the_installer(place, served):
    skip_unless_a_user_can_be_made_of_root()
    _, script = served
    place.install_sudo()
    result = place.run(["sh", "-s", "--", "--no-docker", "--frobnicate"], script)
    assert place.sudo_calls()[1] == ["bash", "-s", "--", "", "--no-docker", "--frobnicate"]
    assert result.returncode == 1
    assert "tassium setup: error: unknown option: --frobnicate" in result.stderr


def test_run_from_a_checkout_the_installer_learns_where_it_is(place):
    skip_unless_a_user_can_be_made_of_root()
    place.install_sudo()
    result = place.run(["sh", str(SCRIPT), "--uninstall", "--keep-key"])
    assert place.sudo_calls()[1] == [
        "bash",
        "-s",
        "--",
        str(SCRIPT.parent),
        "--uninstall",
        "--keep-key",
    ]
    assert place.sudo_stdin(1) == installer(SCRIPT.read_text())
    assert "run me as root" in result.stderr


def test_without_sudo_one_message_and_nothing_runs(place, served):
    skip_unless_a_user_can_be_made_of_root()
    result = place.run(["sh"], served[1])
    assert (result.returncode, result.stdout, result.stderr) == (1, "", NO_SUDO)


def test_a_user_sudo_refuses_gets_one_message_and_nothing_runs(place, served):
    skip_unless_a_user_can_be_made_of_root()
    place.install_sudo(allow=False)
    result = place.run(["sh"], served[1])
    assert (result.returncode, result.stdout, result.stderr) == (1, "", SUDO_REFUSED)
    assert place.sudo_calls() == [["-v"]]


def test_the_usage_needs_no_sudo(place, served):
    skip_unless_a_user_can_be_made_of_root()
    place.install_sudo()
    result = place.run(["sh", "-s", "--", "--help"], served[1])
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: setup.sh [options]")
    assert place.sudo_calls() == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_as_root_the_installer_runs_without_sudo(place, served, shell):
    # As `curl … | sudo bash -s -- OPTIONS` runs it. Never without a bad option here: as
    # root, the installer would go on to install on this machine.
    place.install_sudo()
    result = subprocess.run(
        [shell, "-s", "--", "--no-docker", "--frobnicate"],
        input=served[1],
        cwd=place.root,
        env={"PATH": f"{place.sudo_dir}:{place.tools}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert place.sudo_calls() == []
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("Usage: setup.sh [options]")
    assert result.stderr.endswith("tassium setup: error: unknown option: --frobnicate\n")
