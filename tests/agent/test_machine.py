"""The machine's facts: from the real /proc and file systems, and from written /proc files
for the arithmetic; the Tailscale address from a stand-in ``tailscale`` on PATH."""

import os
import time
from pathlib import Path

import pytest

from agent import machine
from agent.machine import Machine, read_memory, read_storage, tailscale_ip


def write_proc(directory: Path, *, busy: int, idle: int) -> Path:
    # user nice system idle iowait irq softirq steal guest guest_nice
    user = busy // 2
    (directory / "stat").write_text(
        f"cpu  {user} 0 {busy - user} {idle} 0 0 0 0 0 0\ncpu0 1 0 1 1 0 0 0 0 0 0\n"
    )
    (directory / "meminfo").write_text(
        "MemTotal:        8388608 kB\nMemFree:          100000 kB\nMemAvailable:    6291456 kB\n"
    )
    return directory


def test_cpu_use_is_the_average_since_the_previous_sample(tmp_path):
    proc = write_proc(tmp_path, busy=1000, idle=9000)
    reader = Machine(proc)
    assert reader.cpu_usage() is None  # nothing to compare with yet
    write_proc(tmp_path, busy=1300, idle=9700)  # 300 of 1000 jiffies busy
    assert reader.cpu_usage() == 30.0
    write_proc(tmp_path, busy=1300, idle=9800)
    assert reader.cpu_usage() == 0.0


def test_memory_used_is_what_is_not_available(tmp_path):
    assert read_memory(write_proc(tmp_path, busy=1, idle=1)) == (8.0, 2.0)
    assert read_memory(tmp_path / "missing") is None


def test_the_real_machine(tmp_path):
    reader = Machine()
    reader.read(str(tmp_path))
    time.sleep(0.2)  # some jiffies pass between the two samples
    facts = reader.read(str(tmp_path))
    assert facts.cpuCores == os.cpu_count()
    assert 0 <= facts.cpuUsagePercent <= 100
    assert 0 < facts.ramUsedGb < facts.ramTotalGb
    assert 0 < facts.storageUsedGb <= facts.storageTotalGb


def test_storage_of_an_unreadable_data_root_is_left_out(tmp_path):
    assert read_storage(str(tmp_path / "no-such-dir")) is None
    facts = Machine().read(None)
    assert facts.storageTotalGb is None and facts.ramTotalGb is not None


@pytest.fixture
def fake_tailscale(tmp_path, monkeypatch):
    """``fake_tailscale(script)``: a ``tailscale`` program on PATH running that sh script."""

    def install(script: str) -> None:
        program = tmp_path / "bin" / "tailscale"
        program.parent.mkdir(exist_ok=True)
        program.write_text(f"#!/bin/sh\n{script}\n")
        program.chmod(0o755)
        monkeypatch.setenv("PATH", f"{program.parent}:{os.environ['PATH']}")

    return install


def test_the_tailscale_address_comes_from_tailscale_ip(fake_tailscale):
    fake_tailscale('[ "$*" = "ip -4" ] && echo 100.64.0.7')
    assert tailscale_ip() == "100.64.0.7"


@pytest.mark.parametrize(
    "script",
    [
        "echo 'failed to connect to local tailscaled' >&2; exit 1",
        "echo not-an-address",
        "sleep 10",
    ],
)
def test_a_tailscale_that_is_down_broken_or_hung_gives_no_address(
    fake_tailscale, monkeypatch, script
):
    monkeypatch.setattr(machine, "TAILSCALE_SECONDS", 0.5)
    fake_tailscale(script)
    assert tailscale_ip() is None


def test_no_tailscale_installed_gives_no_address(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert tailscale_ip() is None
