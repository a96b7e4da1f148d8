"""The project's programs as the tests run them: from the clone's own virtualenv."""

import sys
from pathlib import Path


def console_script(name: str) -> Path:
    """``name`` as pip installed it next to the interpreter running the tests, so a fresh
    clone tests its own code and never a copy someone installed elsewhere on the machine."""
    script = Path(sys.executable).with_name(name)
    assert script.is_file(), f"{script} is missing: pip install -e '.[test]'"
    return script
