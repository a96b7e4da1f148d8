"""The project's files that the collector hands out besides code: the install script, the
lock of the agent's dependencies and the systemd units. They live at the top of a checkout;
a regular install (and the wheel the collector serves) puts them under
``<prefix>/share/tassium``."""

import sys
from pathlib import Path

SETUP_SCRIPT = "packaging/setup.sh"
# Every distribution the agent needs, pinned with its hashes (made by scripts/lock-agent).
AGENT_LOCK = "packaging/agent-requirements.txt"
AGENT_UNIT = "systemd/tassium-agent.service"
COLLECTOR_UNIT = "systemd/tassium-collector.service"
ALL = (SETUP_SCRIPT, AGENT_LOCK, AGENT_UNIT, COLLECTOR_UNIT)
SHARE = Path("share") / "tassium"


def read(relative: str) -> str:
    for root in (Path(__file__).resolve().parents[2], Path(sys.prefix) / SHARE):
        path = root / relative
        if path.is_file():
            return path.read_text()
    raise FileNotFoundError(f"{relative} is not installed with the collector")
