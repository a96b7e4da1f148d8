"""The machine's facts, as the worker client shows them: CPU cores and use, memory, the
storage of the Docker data root, and the Tailscale address when Tailscale is installed.

CPU use is the average since this agent's previous sample (``/proc/stat`` deltas), not an
instant: the heartbeat describes the interval it closes. Each fact that cannot be read is
left out rather than guessed."""

import ipaddress
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from protocol.heartbeat import System

log = logging.getLogger(__name__)

GIB = 2**30
# `tailscale ip` answers from its local daemon at once; a hung one must not hold a tick.
TAILSCALE_SECONDS = 2.0


@dataclass(frozen=True)
class CpuTimes:
    busy: int
    total: int


def gigabytes(size: float) -> float:
    return round(size / GIB, 2)


def read_cpu_times(proc: Path = Path("/proc")) -> CpuTimes | None:
    """The machine's CPU time in jiffies since boot: busy and total (``/proc/stat``)."""
    try:
        fields = (proc / "stat").read_text().splitlines()[0].split()
        # user nice system idle iowait irq softirq steal (guest time is inside user)
        values = [int(v) for v in fields[1:9]]
    except (OSError, IndexError, ValueError):
        return None
    idle = values[3] + values[4]
    return CpuTimes(busy=sum(values) - idle, total=sum(values))


def read_memory(proc: Path = Path("/proc")) -> tuple[float, float] | None:
    """Total and used memory in GiB; used is what is not available (MemAvailable)."""
    try:
        info = {}
        for line in (proc / "meminfo").read_text().splitlines():
            name, _, rest = line.partition(":")
            info[name] = int(rest.split()[0]) * 1024
        total, available = info["MemTotal"], info["MemAvailable"]
    except (OSError, KeyError, IndexError, ValueError):
        return None
    return gigabytes(total), gigabytes(total - available)


def read_storage(path: str) -> tuple[float, float] | None:
    """Total and used space of the file system holding ``path``, in GiB."""
    try:
        stats = os.statvfs(path)
    except OSError:
        return None
    total = stats.f_blocks * stats.f_frsize
    used = (stats.f_blocks - stats.f_bfree) * stats.f_frsize
    return gigabytes(total), gigabytes(used)


def tailscale_ip() -> str | None:
    """The machine's Tailscale IPv4 address, when Tailscale is installed and up."""
    program = shutil.which("tailscale")
    if program is None:
        return None
    try:
        done = subprocess.run(
            [program, "ip", "-4"], capture_output=True, text=True, timeout=TAILSCALE_SECONDS
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("tailscale ip -4 failed: %s", exc)
        return None
    for line in done.stdout.split():
        try:
            return str(ipaddress.IPv4Address(line.strip()))
        except ValueError:
            continue
    return None


class Machine:
    """Reads the facts each tick, keeping the previous CPU sample for the average."""

    def __init__(self, proc: Path = Path("/proc")):
        self.proc = proc
        self._previous: CpuTimes | None = None

    def cpu_usage(self) -> float | None:
        """Percent of the whole machine busy since the previous call (None the first time)."""
        now = read_cpu_times(self.proc)
        previous, self._previous = self._previous, now
        if now is None or previous is None or now.total <= previous.total:
            return None
        busy = (now.busy - previous.busy) / (now.total - previous.total)
        return round(min(100.0, max(0.0, 100 * busy)), 2)

    def read(self, docker_root: str | None) -> System:
        memory = read_memory(self.proc)
        storage = read_storage(docker_root) if docker_root else None
        return System(
            cpuCores=os.cpu_count(),
            cpuUsagePercent=self.cpu_usage(),
            ramTotalGb=memory[0] if memory else None,
            ramUsedGb=memory[1] if memory else None,
            storageTotalGb=storage[0] if storage else None,
            storageUsedGb=storage[1] if storage else None,
        )
