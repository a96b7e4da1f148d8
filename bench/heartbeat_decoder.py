"""Decoding a heartbeat: microseconds from the body's bytes to the checked ``Heartbeat`` the
windows take, as ``POST /heartbeat`` does it (collector/uptime/heartbeats.py's ``_checked``:
the wallet, the body's fields, the clock), with the signature's check left out: it is the
same Ed25519 verification whatever decodes the body, and would hide the decoder's cost.

The body is a typical one: a few containers with their stats, the machine's facts, the
agent. Run it at two commits, in one sitting, to compare their decoders.

    .venv/bin/python -m bench.heartbeat_decoder [--containers 5] [--rounds 20000] [--repeat 7]
"""

import argparse
import tempfile
import time
from pathlib import Path

from collector.app import create_app
from collector.config import CollectorConfig
from collector.uptime import heartbeats
from protocol.heartbeat import AgentInfo, Container, Heartbeat, System
from protocol.times import utcnow

WALLET = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


def typical_body(containers: int) -> bytes:
    """What an agent on a small server sends: its containers, each with its stats."""
    listed = tuple(
        Container(
            f"app-{i}",
            f"0.0.0.0:{8000 + i}->80/tcp",
            f"{i:012x}",
            "ghcr.io/example/app:1.4.2",
            "running",
            "healthy",
            cpuPercent=3.25 + i,
            memUsageMb=120.5 * (i + 1),
        )
        for i in range(containers)
    )
    return Heartbeat(
        WALLET,
        utcnow(),
        listed,
        AgentInfo("0.9.0", "node-7", True),
        System(8, 23.5, 31.2, 12.4, 468.0, 120.7),
        "100.101.102.103",
    ).to_body()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=20_000, help="decodes per measurement")
    parser.add_argument("--repeat", type=int, default=7, help="measurements; the best is kept")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        config = CollectorConfig(
            database_url=f"sqlite:///{Path(directory) / 'bench.db'}",
            receipt_key_file=str(Path(directory) / "receipt-signing.key"),
        )
        app = create_app(config)
        # Accepted as signed: the check is the same Ed25519 verification at every commit.
        heartbeats._authenticate = lambda *_, **__: None
        body = typical_body(args.containers)
        with app.app_context():
            beat, _ = heartbeats._checked(body, None, config)
            assert len(beat.containers) == args.containers
            best = float("inf")
            for _ in range(args.repeat):
                started = time.perf_counter()
                for _ in range(args.rounds):
                    heartbeats._checked(body, None, config)
                best = min(best, (time.perf_counter() - started) / args.rounds)
    print(
        f"{len(body)} bytes, {args.containers} containers: "
        f"{best * 1e6:.1f} µs per heartbeat (best of {args.repeat} × {args.rounds})"
    )


if __name__ == "__main__":
    main()
