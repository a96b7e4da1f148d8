"""How fast the agent replays a backlog: 2,000 spooled heartbeats, one request each vs batches.

Starts ``tassium-collector serve`` (SQLite in a temporary directory, or ``--database-url``),
and for each mode a fresh worker with its own key, enrolled, whose spool holds the backlog an
outage would leave (one heartbeat a second, ending now). Times the agent's own drain until
the spool is empty, checks that every heartbeat was credited, and prints heartbeats/s per
mode and the ratio, measured in one run.

    .venv/bin/python -m bench.replay [--heartbeats 2000] [--batch-size 100]
"""

import argparse
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from agent import keys
from agent.service import Agent
from agent.spool import Spool
from bench.served import served_collector
from protocol.heartbeat import Heartbeat
from protocol.times import utcnow
from tests.factories import FakeWorker, agent_config


def enrolled_agent(url: str, state: Path, batch_size: int, backlog: int) -> Agent:
    owner = FakeWorker()  # its wallet signs the agent key's enrollment
    config = agent_config(url, state, spool_max=backlog, batch_size=batch_size, wallet=owner.wallet)
    owner.key = key = keys.generate(config.key_path)
    enrolled = owner.enroll_at(url)
    if enrolled.status_code != 201:
        raise SystemExit(f"enrollment answered {enrolled.status_code}: {enrolled.text}")
    spool = Spool(config.spool_path, config.spool_max)
    first = utcnow() - timedelta(seconds=backlog)
    for i in range(backlog):
        spool.append(Heartbeat(config.wallet, first + timedelta(seconds=i)).to_body())
    return Agent(config, key)


def replay(agent: Agent) -> float:
    """Seconds the agent takes to deliver its whole spool; every heartbeat must be credited."""
    total = agent.pending()
    credited = 0
    started = time.perf_counter()
    while agent.pending():
        report = agent.drain(force=True, budget=3600)
        if report.error or report.refused:
            raise SystemExit(f"replay failed: {report}")
        credited += report.credited
    elapsed = time.perf_counter() - started
    if credited != total:
        raise SystemExit(f"{credited} of {total} heartbeats credited")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heartbeats", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory")
    args = parser.parse_args()
    settings = {"processes": args.processes}
    if args.database_url:
        settings["database_url"] = args.database_url

    results = {}
    with served_collector(**settings) as url, tempfile.TemporaryDirectory() as directory:
        for name, batch_size in (("single", 1), (f"batches of {args.batch_size}", args.batch_size)):
            agent = enrolled_agent(url, Path(directory) / name, batch_size, args.heartbeats)
            try:
                results[name] = replay(agent)
            finally:
                agent.close()

    database = "PostgreSQL" if args.database_url else "SQLite"
    print(f"replaying {args.heartbeats} spooled heartbeats, {args.processes} processes, {database}")
    for name, seconds in results.items():
        print(f"{name:<20}{seconds:>8.2f} s{args.heartbeats / seconds:>10.0f} heartbeats/s")
    single, batched = results.values()
    print(f"{'ratio (single / batched time)':<30}{single / batched:>8.1f}")


if __name__ == "__main__":
    main()
