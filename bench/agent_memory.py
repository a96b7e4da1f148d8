"""The agent's own footprint, measured on the real ``tassium-agent`` processes (not this one):
the daemon's resident memory (RSS, and PSS: its share of pages it shares with other
processes) before its first tick and at every tick with many containers, whether it grows,
its CPU seconds per tick, and the peak of ``tassium-agent once``. The default, 24 ticks, is
two hours of the default 5-minute interval, compressed to 10 s apart: long enough to see
whether memory levels off. The target (issue 22): at most 50 MB RSS with the design's
libraries (the Docker SDK, APScheduler, httpx). The daemon runs with the ``Environment=`` of
the agent's systemd unit, as on a worker.

A private Docker engine (no bridge, so it never touches another engine's docker0) runs N
busybox containers, a few of them busy; a stand-in collector in this process accepts every
heartbeat and reads the daemon's /proc/<pid>/status at the moments that matter: when the
daemon asks for the collector's clock (start-up done, no tick yet: it waits for the answer)
and when each heartbeat arrives. CPU per tick is the daemon's user + system time between the
first and the last heartbeat, divided by the ticks between them (pings included).

``--python`` runs the agent with another interpreter, such as a virtualenv holding only
``pip install 'tassium[agent]'``, as a worker has; ``--code`` runs another tree of the agent's
code (``git archive REV agent protocol``) to compare with this checkout's.

    .venv/bin/python -m bench.agent_memory [--containers 100] [--ticks 24] [--interval 10]
        [--python PATH] [--code DIR]
"""

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from tests.agent.conftest import IMAGE, Dockerd
from tests.agent.fake_collector import (
    FakeCollector,
    Reply,
    Request,
    accept_everything,
    collector_json,
)
from tests.factories import new_wallet

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
UNIT = ROOT / "systemd" / "tassium-agent.service"


def unit_environment() -> dict[str, str]:
    """The ``Environment=`` settings of the agent's systemd unit: the daemon is measured as a
    worker runs it."""
    found = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            name, _, value = line.removeprefix("Environment=").partition("=")
            found[name] = value
    return found


def memory_mb(pid: int) -> tuple[float, float]:
    """Resident memory now and its peak (VmRSS, VmHWM), in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(rest.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


def pss_mb(pid: int) -> float:
    """Proportional set size in MB: shared pages counted by the share this process has."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    # Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def start_containers(client, count: int, busy: int, label: str) -> None:
    def start(index: int) -> None:
        command = (
            ["sh", "-c", "while :; do :; done"] if index < busy else ["busybox", "sleep", "3600"]
        )
        client.containers.run(
            IMAGE,
            command,
            name=f"bench-{label[:8]}-{index}",
            labels={"tassium-bench": label},
            network_mode="none",
            detach=True,
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(start, range(count)))


class Watcher:
    """The collector's side: samples the daemon when it asks the time and at each heartbeat."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.startup: tuple[float, float] | None = None
        self.beats: list[tuple[float, float, float, float, float]] = []  # time, rss, peak, cpu, pss
        self.arrived = threading.Condition()

    def answer(self, request: Request) -> Reply:
        if self.pid is not None:
            if request.path == "/healthz" and self.startup is None:
                self.startup = memory_mb(self.pid)
            elif request.path in ("/heartbeat", "/heartbeats"):
                with self.arrived:
                    rss, peak = memory_mb(self.pid)
                    beat = (time.monotonic(), rss, peak, cpu_seconds(self.pid), pss_mb(self.pid))
                    self.beats.append(beat)
                    self.arrived.notify_all()
        if request.path == "/heartbeat/ping":
            return collector_json(accepted=True)
        return accept_everything(request)


def agent_command(python: str, config: Path, *args: str) -> list[str]:
    return [python, "-c", "from agent.cli import main; main()", "--config", str(config), *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--busy", type=int, default=5, help="containers in a busy loop")
    parser.add_argument("--ticks", type=int, default=24, help="two hours at 5 minutes")
    parser.add_argument("--interval", type=int, default=10, help="seconds between heartbeats")
    parser.add_argument("--python", default=sys.executable, help="the agent's interpreter")
    parser.add_argument(
        "--code",
        type=Path,
        default=ROOT,
        help="the agent's code: this checkout, or another tree to compare (git archive REV)",
    )
    args = parser.parse_args()
    unit = unit_environment()
    env = {**os.environ, **unit, "PYTHONPATH": str(args.code)}
    print(f"agent interpreter: {args.python}, code: {args.code}, the unit's environment: {unit}")

    dockerd = Dockerd(options=("--bridge=none", "--iptables=false", "--ip6tables=false"))
    dockerd.start()
    try:
        began = time.monotonic()
        start_containers(dockerd.client(), args.containers, args.busy, uuid.uuid4().hex)
        print(
            f"started {args.containers} containers ({args.busy} busy) "
            f"in {time.monotonic() - began:.1f} s"
        )
        watcher = Watcher()
        with FakeCollector(watcher.answer) as collector:
            config = dockerd.dir / "agent.yaml"
            state = dockerd.dir / "agent"
            config.write_text(
                yaml.safe_dump(
                    {
                        "collector_url": collector.url,
                        "wallet": new_wallet(),
                        "state_dir": str(state),
                        "docker_host": dockerd.host,
                        "interval": args.interval,
                        "jitter": 0,
                        "log_level": "WARNING",
                    }
                )
            )
            keygen = agent_command(args.python, config, "keygen")
            subprocess.run(keygen, env=env, cwd=args.code, check=True, capture_output=True)
            measure_daemon(args, config, env, watcher)
            measure_once(args, config, env, watcher)
    finally:
        dockerd.stop()


def measure_daemon(args, config: Path, env: dict, watcher: Watcher) -> None:
    daemon = subprocess.Popen(
        agent_command(args.python, config, "run"), env=env, cwd=args.code, stderr=subprocess.PIPE
    )
    watcher.pid = daemon.pid
    steady = peak = None
    try:
        deadline = time.monotonic() + args.ticks * args.interval + 120
        with watcher.arrived:
            while daemon.poll() is None and time.monotonic() < deadline:
                if len(watcher.beats) >= args.ticks:
                    steady, peak = memory_mb(daemon.pid)
                    break
                watcher.arrived.wait(1)
    finally:
        daemon.terminate()
        _, stderr = daemon.communicate(timeout=30)
        watcher.pid = None
    if stderr.strip():
        print(f"the daemon logged:\n{stderr.decode(errors='replace')}")
    if steady is None:
        if not watcher.beats:
            raise SystemExit("the daemon stopped or stalled before its first heartbeat")
        print(f"the daemon delivered {len(watcher.beats)} of {args.ticks} heartbeats in time")
        _, steady, peak, _, _ = watcher.beats[-1]
    if watcher.startup is not None:
        rss, hwm = watcher.startup
        print(f"run, started, before any tick: RSS {rss:.1f} MB (peak {hwm:.1f} MB)")
    for number, (_, rss, hwm, _, pss) in enumerate(watcher.beats, 1):
        print(
            f"run, heartbeat {number} delivered: RSS {rss:.1f} MB, PSS {pss:.1f} MB "
            f"(peak {hwm:.1f} MB)"
        )
    print(
        f"run, after {len(watcher.beats)} ticks with {args.containers} containers: "
        f"RSS {steady:.1f} MB steady, PSS {watcher.beats[-1][4]:.1f} MB, peak {peak:.1f} MB"
    )
    if len(watcher.beats) > 2:
        # From the second tick on: the first one loads what the ticks use.
        growth = watcher.beats[-1][1] - watcher.beats[1][1]
        print(f"run, RSS growth from heartbeat 2 to {len(watcher.beats)}: {growth:+.1f} MB")
    first, last = watcher.beats[0], watcher.beats[-1]
    if len(watcher.beats) > 1:
        per_tick = (last[3] - first[3]) / (len(watcher.beats) - 1)
        print(f"run, CPU per tick (user + system, pings included): {per_tick:.2f} s")


def measure_once(args, config: Path, env: dict, watcher: Watcher) -> None:
    """``once``'s peak as its heartbeat arrives: everything but reading the answer is done.
    (Its ru_maxrss would not do: it counts the bench process the child was forked from.)"""
    watcher.beats.clear()
    began = time.monotonic()
    once = subprocess.Popen(
        agent_command(args.python, config, "once"),
        env=env,
        cwd=args.code,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    watcher.pid = once.pid
    _, stderr = once.communicate(timeout=120)
    watcher.pid = None
    if once.returncode != 0 or not watcher.beats:
        raise SystemExit(f"tassium-agent once failed:\n{stderr.decode(errors='replace')}")
    _, _, peak, cpu, _ = watcher.beats[-1]
    print(
        f"once, {args.containers} containers: peak RSS {peak:.1f} MB, CPU {cpu:.2f} s "
        f"(start-up included), {time.monotonic() - began:.1f} s"
    )


if __name__ == "__main__":
    main()
