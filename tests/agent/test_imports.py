"""The agent loads only what it uses: every package it imports is resident memory on every
worker (bench/agent_memory.py measures the daemon). Checked in a fresh interpreter, as the
daemon starts, for each command's module."""

import json
import subprocess
import sys

import pytest

from agent import keys

# The agent's stack is the design's (the Docker SDK, APScheduler, httpx, issue 22); none of
# the collector's, nor the parts of its libraries it does not use: APScheduler's asyncio,
# gevent, Twisted and database pieces, the SDK's paramiko (ssh:// goes through the ssh
# binary), and what only verifies signatures (nacl, coincurve: the collector's work).
NOT_NEEDED = (
    "collector",
    "flask",
    "werkzeug",
    "peewee",
    "psycopg2",
    "gevent",
    "gunicorn",
    "prometheus_client",
    "limits",
    "nacl",
    "coincurve",
    "paramiko",
    "sqlalchemy",
    "apscheduler.schedulers.asyncio",
    "apscheduler.executors.asyncio",
    "apscheduler.jobstores.sqlalchemy",
    # The agent signs with pycryptodome (agent/keys.py): cryptography would cost the daemon
    # about 7 MB resident for the same signatures.
    "cryptography",
)


def loaded_by(code: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys\nprint(json.dumps(list(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize("module", ["agent.cli", "agent.service", "agent.status"])
def test_no_command_loads_what_the_agent_does_not_use(module):
    loaded = loaded_by(f"import {module}")
    assert [m for m in NOT_NEEDED if m in loaded] == []


def test_the_daemons_start_loads_none_of_it_either(tmp_path):
    # A checksummed wallet, as an owner pastes it, is hashed; the key keygen wrote is read.
    path = tmp_path / "agent.key"
    keys.generate(path)
    config = tmp_path / "agent.yaml"
    config.write_text(
        "collector_url: http://127.0.0.1:9\n"
        "wallet: '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed'\n"
        f"state_dir: {tmp_path}\n"
    )
    loaded = loaded_by(
        "from pathlib import Path\n"
        "from agent import keys\n"
        "from agent.config import load_config\n"
        f"config = load_config(Path({str(config)!r}), environ={{}})\n"
        "assert config.wallet == '0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed'\n"
        "keys.load(config.key_path).sign(b'x')"
    )
    assert [m for m in NOT_NEEDED if m in loaded] == []
