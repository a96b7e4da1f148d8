"""The agent's tick with many containers: seconds to collect a heartbeat (listing, inspecting,
one-shot stats of every running container, the machine's facts) and the process's RSS, on a
private Docker engine with N busybox containers (half of them busy, so CPU % means something).

The stats of all containers are asked concurrently within ``docker_timeout``; the tick budget
the systemd watchdog allows is ``4 × docker_timeout + 10`` seconds (50 s by default).

    .venv/bin/python -m bench.agent_tick [--containers 100] [--ticks 3]
"""

import argparse
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agent import keys
from agent.service import Agent
from tests.agent.conftest import IMAGE, Dockerd
from tests.factories import agent_config


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=3)
    args = parser.parse_args()

    dockerd = Dockerd()
    dockerd.start()
    try:
        client = dockerd.client()

        def start(index: int) -> None:
            command = (
                ["sh", "-c", "while :; do :; done"] if index % 2 else ["busybox", "sleep", "3600"]
            )
            client.containers.run(IMAGE, command, name=f"bench-{index}", detach=True)

        began = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(start, range(args.containers)))
        print(f"started {args.containers} containers in {time.monotonic() - began:.1f} s")

        state = Path(dockerd.dir) / "agent"
        config = agent_config("http://127.0.0.1:9", state, docker_host=dockerd.host)
        agent = Agent(config, keys.generate(config.key_path))
        budget = 4 * config.docker_timeout + 10
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        for tick in range(args.ticks):
            began = time.monotonic()
            heartbeat = agent.collect()
            took = time.monotonic() - began
            measured = sum(c.cpuPercent is not None for c in heartbeat.containers)
            print(
                f"tick {tick + 1}: {took:.2f} s ({took / budget:.0%} of the {budget:.0f} s "
                f"budget), {len(heartbeat.containers)} containers, {measured} with CPU %, "
                f"RSS {rss_mb():.1f} MB"
            )
        used = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (used.ru_utime + used.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
        print(f"agent CPU time per tick: {cpu / args.ticks:.2f} s")
        agent.close()
    finally:
        dockerd.stop()


if __name__ == "__main__":
    main()
