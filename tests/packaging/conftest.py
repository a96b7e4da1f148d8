"""Machines with a real systemd for the packaging tests (see nspawn.py): ``machine`` boots
one, ``make_machine(bind_ro={...})`` boots one with options. Tests using them are marked
``nspawn``. They skip when TASSIUM_SKIP_NSPAWN=1, or without root, systemd-nspawn or
debootstrap, unless TASSIUM_REQUIRE_NSPAWN is set (as CI does): then nothing skips them, and
what is missing is a failure."""

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.packaging import nspawn

# Read now: tests/conftest.py removes every TASSIUM_* variable before each test runs.
SKIP = os.environ.get("TASSIUM_SKIP_NSPAWN") == "1"
REQUIRE = bool(os.environ.get("TASSIUM_REQUIRE_NSPAWN"))


@pytest.fixture(scope="session")
def nspawn_base() -> Path:
    """The cached Debian root that machines boot an overlay of."""
    if REQUIRE:
        problems = nspawn.missing_requirements()
        if problems:
            pytest.fail(f"TASSIUM_REQUIRE_NSPAWN is set, but: {'; '.join(problems)}")
    elif SKIP:
        pytest.skip("TASSIUM_SKIP_NSPAWN=1")
    elif problems := nspawn.missing_requirements():
        pytest.skip(f"cannot boot machines: {'; '.join(problems)}")
    return nspawn.cached_root()


@pytest.fixture
def make_machine(nspawn_base, tmp_path) -> Iterator[Callable[..., nspawn.Machine]]:
    """Boot a machine, ``make_machine(bind_ro={host_path: "/in/container"})``; every one is
    powered off and its root deleted after the test (its boot log stays in tmp_path)."""
    machines: list[nspawn.Machine] = []

    def make(**options) -> nspawn.Machine:
        machine = nspawn.Machine(nspawn_base, tmp_path / f"machine-{len(machines)}", **options)
        machines.append(machine)
        machine.boot()
        return machine

    with nspawn.one_at_a_time():
        yield make
        for machine in reversed(machines):
            machine.shutdown()


@pytest.fixture
def machine(make_machine) -> nspawn.Machine:
    return make_machine()


@pytest.fixture
def online_machine(machine) -> nspawn.Machine:
    """A machine that installs from PyPI: where this host's network re-signs TLS with a local
    authority, the machine trusts that authority as the host does (pip too)."""
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if bundle.is_file():
        machine.path(str(bundle)).write_bytes(bundle.read_bytes())
        machine.path("/etc/pip.conf").write_text(f"[global]\ncert = {bundle}\n")
    return machine
