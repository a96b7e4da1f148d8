"""What the code imports is what pyproject.toml declares for its side: protocol/ the base
dependencies only, agent/ and collector/ those plus their own extra, the tests all of them
plus the test extra. A module that arrives only as another package's dependency would
vanish, or come in too old for the code, the day that package changes; the lowest-versions
run (scripts/test-lowest) only tests bounds that are declared."""

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
FIRST_PARTY = {"agent", "collector", "protocol", "tests"}
# Each side's directory, the extras it may use, and the first-party packages it may import:
# the protocol is what both sides share, so it imports neither; the agent never the collector
# (a worker installs no collector); the collector serves the agent's code, so imports it.
SIDES = {
    "protocol": ((), {"protocol"}),
    "agent": (("agent",), {"agent", "protocol"}),
    "collector": (("collector",), {"agent", "collector", "protocol"}),
    "tests": (("agent", "collector", "test"), FIRST_PARTY),
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(extras: tuple[str, ...]) -> set[str]:
    """The distributions pyproject.toml lists for the base and these extras."""
    requirements = list(PROJECT["dependencies"])
    for extra in extras:
        requirements += PROJECT["optional-dependencies"][extra]
    return {canonical(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r).group()) for r in requirements}


def imports(root: Path, directory: str) -> Iterator[tuple[str, str]]:
    """(where, top-level module) of every absolute import under directory, wherever it
    stands (in a function, under ``if TYPE_CHECKING``, in a ``try``)."""
    for path in sorted((root / directory).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
            where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield where, alias.name.partition(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                yield where, node.module.partition(".")[0]


def problems(side: str, root: Path = ROOT) -> list[str]:
    extras, first_party = SIDES[side]
    allowed = declared(extras)
    distributions = importlib.metadata.packages_distributions()
    found = []
    for where, module in imports(root, side):
        if module in sys.stdlib_module_names or module in first_party:
            continue
        if module in FIRST_PARTY:
            found.append(f"{where}: {side}/ must not import {module}")
        elif module not in distributions:
            found.append(f"{where}: {module} comes from no installed distribution")
        elif not allowed & {canonical(name) for name in distributions[module]}:
            wanted = " or ".join(sorted(set(distributions[module])))
            extra = f"the {'/'.join(extras)} extra" if extras else "the base dependencies"
            found.append(f"{where}: {module} is imported but {wanted} is not in {extra}")
    return found


@pytest.mark.parametrize("side", sorted(SIDES))
def test_every_third_party_import_is_declared_for_its_side(side):
    assert problems(side) == []


def test_the_check_sees_an_undeclared_import(tmp_path):
    # requests arrives with docker: in the protocol, it would be undeclared.
    (tmp_path / "protocol").mkdir()
    (tmp_path / "protocol" / "x.py").write_text(
        "import json\nfrom . import y\ndef f():\n    import requests.adapters\n    import agent\n"
    )

    assert problems("protocol", tmp_path) == [
        "protocol/x.py:4: requests is imported but requests is not in the base dependencies",
        "protocol/x.py:5: protocol/ must not import agent",
    ]
