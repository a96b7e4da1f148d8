"""packaging/agent-requirements.txt, which scripts/lock-agent writes and the setup script
installs with pip's --require-hashes: it must pin, with hashes, a release of every
distribution that pyproject.toml names for the agent (the base dependencies and the agent
extra) within its bounds, on every worker the script supports. Regenerating it needs the
network; this check does not."""

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[2]
LOCK = ROOT / "packaging" / "agent-requirements.txt"
_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")
# The workers the setup script supports: Debian 12 on, Ubuntu 24.04 on; CPython 3.11 to
# 3.14 on x86_64 and aarch64.
WORKERS = [
    {
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "python_version": version,
        "python_full_version": f"{version}.0",
        "platform_machine": machine,
        "platform_system": "Linux",
        "sys_platform": "linux",
        "os_name": "posix",
        "extra": "",
    }
    for version in ("3.11", "3.12", "3.13", "3.14")
    for machine in ("x86_64", "aarch64")
]


@dataclass(frozen=True)
class Pin:
    requirement: Requirement
    hashes: tuple[str, ...]

    @property
    def version(self) -> str:
        (specifier,) = self.requirement.specifier
        return specifier.version

    def applies(self, worker: dict[str, str]) -> bool:
        marker = self.requirement.marker
        return marker is None or marker.evaluate(worker)


def pins(text: str) -> list[Pin]:
    """The requirements of a lock as uv and pip-tools write one: ``name==version [; marker]``
    and its ``--hash`` options, continued over lines ending in a backslash; comments."""
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        words = re.sub(r"(^|\s)#.*", "", line).split()
        if not words:
            continue
        hashes = tuple(word for word in words if word.startswith("--"))
        found.append(Pin(Requirement(" ".join(w for w in words if w not in hashes)), hashes))
    return found


def agent_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    named = project["dependencies"] + project["optional-dependencies"]["agent"]
    return [Requirement(requirement) for requirement in named]


def badly_pinned(locked: list[Pin]) -> list[str]:
    """What is wrong with each line of the lock itself: each must pin one exact version by
    name (no URL, no other option) with at least one sha256, and say it once."""
    problems = []
    for pin in locked:
        requirement = pin.requirement
        exact = [s.operator for s in requirement.specifier] == ["=="] and "*" not in str(
            requirement.specifier
        )
        if requirement.url or not exact:
            problems.append(f"{requirement} is not pinned to one version")
        if not pin.hashes or not all(_HASH.fullmatch(h) for h in pin.hashes):
            problems.append(f"{requirement} has options other than sha256 hashes, or none")
    names = [canonicalize_name(pin.requirement.name) for pin in locked]
    problems += [
        f"{name} is pinned twice" for name in sorted({n for n in names if names.count(n) > 1})
    ]
    return problems


def uncovered(wanted: list[Requirement], locked: list[Pin]) -> list[str]:
    """Each requirement that some supported worker needs and the lock does not pin for that
    worker within the requirement's bounds."""
    problems = []
    for worker in WORKERS:
        here = {canonicalize_name(p.requirement.name): p for p in locked if p.applies(worker)}
        for requirement in wanted:
            if requirement.marker is not None and not requirement.marker.evaluate(worker):
                continue
            pin = here.get(canonicalize_name(requirement.name))
            where = f"Python {worker['python_version']} on {worker['platform_machine']}"
            if pin is None:
                problems.append(f"{requirement.name} is not in the lock for {where}")
            elif not requirement.specifier.contains(pin.version, prereleases=True):
                problems.append(f"{requirement.name}=={pin.version} is not {requirement}")
    return sorted(set(problems))


def test_the_lock_pins_every_agent_dependency_within_its_bounds():
    locked = pins(LOCK.read_text())
    assert {canonicalize_name(r.name) for r in agent_requirements()} <= {
        canonicalize_name(p.requirement.name) for p in locked
    }
    assert uncovered(agent_requirements(), locked) == []


def test_the_lock_holds_no_cffi_so_pycryptodome_loads_its_code_with_ctypes():
    # With cffi installed, pycryptodome loads it and pycparser (about 2 MB resident in the
    # daemon, bench/agent_memory.py); the agent needs neither, nor cryptography, which brings it.
    names = {canonicalize_name(p.requirement.name) for p in pins(LOCK.read_text())}
    assert names & {"cffi", "pycparser", "cryptography"} == set()


def test_every_line_of_the_lock_is_one_version_pinned_by_its_hashes():
    locked = pins(LOCK.read_text())
    assert badly_pinned(locked) == []
    # uv writes those of every wheel and source distribution, so that each worker finds its
    # own; a pure-Python release may have a single wheel (certifi).
    assert all(pin.hashes for pin in locked), [str(p.requirement) for p in locked]


def test_the_lock_was_written_by_the_script_in_the_repository():
    assert LOCK.read_text().startswith(
        "# This file was autogenerated by uv via the following command:\n#    scripts/lock-agent\n"
    )
    assert (ROOT / "scripts" / "lock-agent").stat().st_mode & 0o111


HASHES = " --hash=sha256:" + "a" * 64 + " --hash=sha256:" + "b" * 64


@pytest.mark.parametrize(
    "lock, problem",
    [
        ("pyyaml==6.0.1" + HASHES, "cryptography is not in the lock"),
        (
            "cryptography==39.0.0" + HASHES + "\npyyaml==6.0.1" + HASHES,
            "cryptography==39.0.0 is not",
        ),
        (
            "cryptography==41.0.0 ; platform_machine == 'x86_64'"
            + HASHES
            + "\npyyaml==6.0.1"
            + HASHES,
            "cryptography is not in the lock for Python 3.11 on aarch64",
        ),
        (
            "cryptography==41.0.0 ; python_version < '3.12'" + HASHES + "\npyyaml==6.0.1" + HASHES,
            "cryptography is not in the lock for Python 3.12 on x86_64",
        ),
    ],
    ids=["missing", "too-old", "one-machine-only", "one-python-only"],
)
def test_the_coverage_check_sees_a_lock_that_falls_short(lock, problem):
    wanted = [Requirement("cryptography>=40"), Requirement("pyyaml>=6")]
    problems = uncovered(wanted, pins(lock))
    assert any(p.startswith(problem) for p in problems), problems


@pytest.mark.parametrize(
    "line, problem",
    [
        ("pyyaml>=6" + HASHES, "pyyaml>=6 is not pinned to one version"),
        ("pyyaml==6.*" + HASHES, "pyyaml==6.* is not pinned to one version"),
        ("pyyaml==6.0.1", "pyyaml==6.0.1 has options other than sha256 hashes, or none"),
        ("pyyaml==6.0.1 --hash=md5:abc", "pyyaml==6.0.1 has options other than sha256"),
        ("pyyaml==6.0.1" + HASHES + " --index-url=http://x", "pyyaml==6.0.1 has options"),
        ("pyyaml==6.0.1" + HASHES + "\nPyYAML==6.0.2" + HASHES, "pyyaml is pinned twice"),
    ],
    ids=["range", "wildcard", "no-hash", "md5", "index", "twice"],
)
def test_the_pin_check_sees_a_line_that_is_not_pinned(line, problem):
    problems = badly_pinned(pins(line))
    assert any(p.startswith(problem) for p in problems), problems


def test_lines_continued_with_backslashes_are_one_requirement():
    text = (
        "# a comment\n"
        "cffi==2.0.0 ; platform_python_implementation != 'PyPy' \\\n"
        "    --hash=sha256:" + "c" * 64 + " \\\n"
        "    --hash=sha256:" + "d" * 64 + "\n"
        "    # via cryptography\n"
    )
    (pin,) = pins(text)
    assert (pin.requirement.name, pin.version, len(pin.hashes)) == ("cffi", "2.0.0", 2)
    assert pin.requirement.marker == Marker("platform_python_implementation != 'PyPy'")
    assert not pin.applies({**WORKERS[0], "platform_python_implementation": "PyPy"})
