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
# Where the units expect each program; the test points them at this virtualenv's instead.
PROGRAMS = {
    "tassium-agent.service": "/opt/tassium-agent/bin/tassium-agent",
    "tassium-collector.service": "/opt/tassium-collector/bin/tassium-collector",
}

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (package systemd)"
)


@pytest.fixture(params=sorted(PROGRAMS))
def unit(request, tmp_path) -> Path:
    name = request.param
    installed = console_script(Path(PROGRAMS[name]).name)
    text = (UNITS / name).read_text().replace(PROGRAMS[name], str(installed))
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
