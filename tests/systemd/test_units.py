"""The systemd units: ``systemd-analyze verify`` has nothing to say, and the sandboxing
scores at most THRESHOLD on ``systemd-analyze security`` (0 is best, 10 is unconfined)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.programs import console_script

UNITS = Path(__file__).parents[2] / "systemd"
THRESHOLD = 2.0
NAMES = ["tassium-agent.service", "tassium-collector.service"]

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (package systemd)"
)


@pytest.fixture(params=NAMES)
def unit(request, tmp_path) -> Path:
    """The unit with its program (where an install puts it) replaced by this virtualenv's."""
    name = request.param
    text = (UNITS / name).read_text()
    expected = re.search(r"^ExecStart=(\S+)", text, re.M)[1]
    text = text.replace(expected, str(console_script(Path(expected).name)))
    path = tmp_path / name
    path.write_text(text)
    return path


def test_systemd_analyze_verify_finds_nothing(unit):
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    # verify exits 0 on some mistakes and only prints them: any output is a failure.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_sandboxing_scores_below_the_threshold(unit):
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= THRESHOLD, result.stdout


def rootless_drop_in() -> str:
    """The drop-in packaging/setup.sh writes for --docker-host, as the script holds it."""
    script = (UNITS.parent / "packaging" / "setup.sh").read_text()
    function = script[script.index("install_rootless_dropin() {") :]
    body = function.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    assert "[Service]" in body
    return body + "\n"


def test_the_rootless_docker_drop_in_verifies_and_keeps_the_sandbox(tmp_path):
    # The agent's unit as systemd reads it with the drop-in beside it: valid, without the
    # docker group, and still sandboxed within the threshold.
    text = (UNITS / "tassium-agent.service").read_text()
    expected = re.search(r"^ExecStart=(\S+)", text, re.M)[1]
    unit = tmp_path / "tassium-agent.service"
    unit.write_text(text.replace(expected, str(console_script(Path(expected).name))))
    (tmp_path / "tassium-agent.service.d").mkdir()
    (tmp_path / "tassium-agent.service.d" / "rootless-docker.conf").write_text(rootless_drop_in())

    verified = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")
    assert "SupplementaryGroups=\n" in rootless_drop_in()
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    score = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert score and float(score[1]) <= THRESHOLD, security.stdout + security.stderr
