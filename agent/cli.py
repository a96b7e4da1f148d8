"""``tassium-agent``: not built yet (issue 3). Says so instead of pretending."""

import sys


def main() -> None:
    sys.exit("tassium-agent is not built yet: the agent daemon is the next issue")
