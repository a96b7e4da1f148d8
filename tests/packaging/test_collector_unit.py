"""An operator runs the collector as systemd/tassium-collector.service under a real systemd:
the sandboxed unit starts gunicorn, migrates at start, reads the API token from its
environment file, keeps its SQLite database in its own state directory, and (installed from
the wheel, not a checkout) still serves the install script."""

import hashlib
import re
from pathlib import Path

import httpx
import pytest

from collector.install import wheel
from tests.conftest import free_port
from tests.polling import wait_for

pytestmark = pytest.mark.nspawn

UNIT = Path(__file__).parents[2] / "systemd" / "tassium-collector.service"
LOCK = Path(__file__).parents[2] / "packaging" / "agent-requirements.txt"
API_TOKEN = "operator-token-0123456789"


@pytest.fixture
def operator_machine(online_machine):
    """The collector installed as an operator would: a virtualenv in /opt/tassium-collector
    holding the wheel with the collector extra, the unit, its config and environment file."""
    machine = online_machine
    built = wheel.current()
    machine.path(f"/root/{built.filename}").write_bytes(built.content)
    machine.run(
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        "--no-install-recommends python3-venv >/dev/null",
        timeout=600,
    )
    machine.run(
        "python3 -m venv /opt/tassium-collector && /opt/tassium-collector/bin/pip install "
        f"--quiet --disable-pip-version-check '/root/{built.filename}[collector]'",
        timeout=600,
    )
    port = free_port()
    machine.path("/etc/tassium").mkdir()
    machine.path("/etc/tassium/collector.yaml").write_text(f"host: 127.0.0.1\nport: {port}\n")
    env = machine.path("/etc/tassium/collector.env")
    env.write_text(f"TASSIUM_API_TOKEN={API_TOKEN}\n")
    env.chmod(0o600)
    machine.path("/etc/systemd/system/tassium-collector.service").write_text(UNIT.read_text())
    machine.run("systemctl daemon-reload && systemctl start tassium-collector")
    return machine, f"http://127.0.0.1:{port}"


def wait_healthy(url: str) -> httpx.Response:
    def answer() -> httpx.Response | None:
        try:
            return httpx.get(f"{url}/healthz", timeout=2)
        except httpx.TransportError:
            return None

    return wait_for(answer, f"the collector unit to answer at {url}", timeout=60)


def test_the_collector_unit_serves_migrated_with_its_token(operator_machine):
    machine, url = operator_machine
    health = wait_healthy(url)
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok"

    def show(name: str) -> str:
        return machine.run(f"systemctl show tassium-collector --value -p {name}").stdout.strip()

    assert show("ActiveState") == "active"
    pid = show("MainPID")
    # A dynamic user, never root; the main process is gunicorn's master, with its workers.
    assert machine.run(["ps", "-o", "user=", "-p", pid]).stdout.strip() not in ("root", "")
    # Health answers once one worker is up; the second may still be booting.
    wait_for(
        lambda: len(machine.run(["pgrep", "-P", pid], check=False).stdout.split()) == 2,
        "gunicorn's two workers (processes: 2)",
    )
    # Room for connections_per_process descriptors in each worker, which the sandbox cannot
    # raise: LimitNOFILE=65536, capped at what this machine allows, never systemd's soft 1024.
    limits = machine.run(["cat", f"/proc/{pid}/limits"]).stdout
    soft, hard = re.search(r"Max open files\s+(\d+)\s+(\d+)", limits).groups()
    assert int(soft) == int(hard) >= 4096, limits

    deployment = {"name": "unit-test", "github": "tassium/demo", "creator": "0x" + "ab" * 20}
    refused = httpx.post(f"{url}/deployments", json=deployment, timeout=5)
    assert refused.status_code == 401
    created = httpx.post(
        f"{url}/deployments",
        json=deployment,
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        timeout=5,
    )
    assert created.status_code == 201, created.text

    # Installed from the wheel, not a checkout: the install script comes from the data files.
    script = httpx.get(f"{url}/setup.sh", params={"wallet": deployment["creator"]}, timeout=5)
    assert script.status_code == 200, script.text
    assert script.text.startswith("#!/bin/sh\n")
    assert machine.path("/opt/tassium-collector/share/tassium/packaging/setup.sh").is_file()
    # So does the lock of the agent's dependencies, which the script pins by its sha256.
    lock = httpx.get(f"{url}/packages/agent-requirements.txt", timeout=5)
    assert (lock.status_code, lock.content) == (200, LOCK.read_bytes())
    assert f"\nLOCK_SHA256={hashlib.sha256(lock.content).hexdigest()}\n" in script.text

    # DynamicUser keeps the state under /var/lib/private; the database is there, not in /.
    assert machine.path("/var/lib/private/tassium-collector/tassium-collector.db").is_file()
    machine.run("systemctl restart tassium-collector")
    wait_healthy(url)
    kept = httpx.get(f"{url}/deployments/unit-test", timeout=5)
    assert kept.status_code == 200
