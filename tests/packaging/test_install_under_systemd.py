"""What a worker owner does, under a real systemd: the one line from the UI installs the agent
from a collector on the host, systemd keeps it running (the watchdog restarts a hung agent),
the same line upgrades it with the same key, and --uninstall leaves nothing behind."""

import json
import shutil
from collections.abc import Callable

import httpx
import pytest

from collector import wheel
from protocol.times import utcnow
from tests.factories import FakeWorker, new_wallet
from tests.polling import wait_for

# One collector backend is enough here: the routes themselves are tested on both.
pytestmark = [pytest.mark.nspawn, pytest.mark.parametrize("backend", ["sqlite"])]

KEY = "/var/lib/tassium-agent/agent.key"
SPOOL = "/var/lib/tassium-agent/spool"
# Seconds to wait for the machine: installing and restarting under systemd is slow.
SLOW = 60
API_TOKEN = "operator-token-0123456789"
# Short enough for a test, long enough for the agent's pings (every WatchdogSec/2).
WATCHDOG_DROP_IN = """[Service]
WatchdogSec=6
TimeoutAbortSec=3
RestartSec=1
"""


class Owner:
    """A worker owner at a booted machine, with the collector's one line at hand."""

    def __init__(self, machine, collector):
        self.machine = machine
        self.collector = collector
        self.collector_url = collector_url = collector.url
        self.wallet = new_wallet()
        # The operator hands out an enrollment token, and the UI puts it in the line.
        issued = httpx.post(
            f"{collector_url}/workers/tokens",
            json={"walletAddress": self.wallet},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=5,
        )
        assert issued.status_code == 201, issued.text
        self.token = issued.json()["token"]

    def setup(self, *options: str, answer: str | None = None):
        """The line from the UI; with ``answer``, typed at a terminal (script(1) gives the
        command a pty) the way an owner answers the script's question."""
        url = f"{self.collector_url}/setup.sh?wallet={self.wallet}&token={self.token}"
        line = f"curl -fsSL '{url}' | bash -s -- {' '.join(options)}"
        if answer is None:
            return self.machine.run(line, timeout=900)
        return self.machine.run(["script", "-qec", line, "/dev/null"], input=answer + "\n")

    def worker(self, part: str = "") -> dict:
        """The collector's view of this worker (``part``: ``/containers`` and the like)."""
        response = httpx.get(f"{self.collector_url}/workers/{self.wallet}{part}", timeout=5)
        response.raise_for_status()
        return response.json()

    def containers(self) -> list[dict]:
        return self.worker("/containers")["containers"]

    def heartbeat_after(self, moment: str | None) -> Callable[[], str | None]:
        def newer() -> str | None:
            last = self.worker()["lastHeartbeat"]
            return last if last is not None and (moment is None or last > moment) else None

        return newer

    def service(self, name: str) -> str:
        return self.machine.run(f"systemctl show tassium-agent --value -p {name}").stdout.strip()


def let_docker_run_in(machine) -> None:
    """dockerd in a machine that shares the host's network may not touch iptables, make a
    bridge or mount overlays; this daemon.json, there before the script installs Docker,
    keeps it from trying. Containers can be created, not started: enough to be listed."""
    machine.path("/etc/docker").mkdir()
    daemon = {"iptables": False, "ip6tables": False, "bridge": "none", "storage-driver": "vfs"}
    machine.path("/etc/docker/daemon.json").write_text(json.dumps(daemon))


def create_container(machine, name: str) -> None:
    """A container from an image imported from the host's static busybox (none can be pulled)."""
    busybox = shutil.which("busybox")
    assert busybox, "the tests need busybox-static on the host"
    rootfs = machine.path("/root/rootfs/bin")
    rootfs.mkdir(parents=True)
    shutil.copy(busybox, rootfs / "busybox")
    machine.run(
        "tar -C /root/rootfs -c . | docker import - local/busybox >/dev/null"
        f" && docker create --name {name} local/busybox /bin/busybox sleep 600"
    )


@pytest.fixture
def owner(online_machine, serve_collector) -> Owner:
    let_docker_run_in(online_machine)
    collector = serve_collector(enrollment_policy="token", api_token=API_TOKEN)
    return Owner(online_machine, collector)


def test_install_run_restart_upgrade_uninstall(machine, owner):
    # Install: the owner's one line with the operator's token; Docker is installed too.
    installed = owner.setup()
    assert "==> Installing python3-venv docker.io" in installed.stdout
    assert machine.run("command -v docker").stdout == "/usr/bin/docker\n"
    assert "==> Generating the worker key" in installed.stdout
    assert owner.service("ActiveState") == "active"
    first = wait_for(
        owner.heartbeat_after(None), "the first heartbeat at the collector", timeout=SLOW
    )
    assert owner.worker()["enrolled"] is True
    key = machine.path(KEY).read_bytes()
    assert machine.run(["stat", "-c", "%a %U", KEY]).stdout == "600 tassium\n"
    assert machine.run("id -nG tassium").stdout.split() == ["tassium", "docker"]

    # The sandboxed agent reads Docker through its group: a container made now is in the
    # heartbeat it sends when the restart below starts it again.
    wait_for(
        lambda: machine.run("systemctl is-active docker", check=False).stdout == "active\n",
        "Docker to start in the machine",
        timeout=SLOW,
    )
    create_container(machine, "tassium-probe")

    # A hung agent: stop its loop, and the watchdog has systemd kill and restart it.
    drop_in = machine.path("/etc/systemd/system/tassium-agent.service.d/watchdog.conf")
    drop_in.parent.mkdir()
    drop_in.write_text(WATCHDOG_DROP_IN)
    machine.run("systemctl daemon-reload && systemctl restart tassium-agent")
    beat = wait_for(owner.heartbeat_after(first), "a heartbeat after the restart", timeout=SLOW)
    assert owner.worker()["dockerAvailable"] is True
    assert [c["containerName"] for c in owner.containers()] == ["tassium-probe"]
    pid, restarts = owner.service("MainPID"), int(owner.service("NRestarts"))
    machine.run(["kill", "-STOP", pid])
    wait_for(
        lambda: (
            int(owner.service("NRestarts")) > restarts
            and owner.service("ActiveState") == "active"
            and owner.service("MainPID") not in (pid, "0")
        ),
        "systemd to restart the hung agent",
        timeout=SLOW,
    )
    journal = machine.run("journalctl -u tassium-agent --no-pager").stdout
    assert "Watchdog timeout" in journal
    beat = wait_for(
        owner.heartbeat_after(beat), "a heartbeat from the restarted agent", timeout=SLOW
    )

    # A heartbeat the agent could not deliver waits in the spool while it is stopped.
    machine.run("systemctl stop tassium-agent")
    spooled = machine.path(SPOOL + "/000000000001.json")
    spooled.write_text(json.dumps(FakeWorker(owner.wallet).heartbeat_body(utcnow())))
    machine.run(["chown", "tassium:tassium", SPOOL + "/000000000001.json"])

    # Upgrade in place: the same line again (its token used by now) keeps the key, the
    # enrollment and the spool, which the upgraded agent delivers.
    answered = len(owner.collector.heartbeat_statuses())
    upgraded = owner.setup()
    assert "==> System packages are present" in upgraded.stdout
    assert "==> Keeping the existing worker key" in upgraded.stdout
    assert "Generating" not in upgraded.stdout
    assert machine.path(KEY).read_bytes() == key
    assert owner.service("ActiveState") == "active"
    beat = wait_for(
        owner.heartbeat_after(beat), "a heartbeat from the upgraded agent", timeout=SLOW
    )
    # Its startup heartbeat and, before it, the spooled one; the interval is minutes.
    wait_for(
        lambda: owner.collector.heartbeat_statuses()[answered:] == [200, 200],
        "the upgraded agent to deliver the spooled heartbeat and its own",
        timeout=SLOW,
    )
    assert not spooled.exists()

    # An operator's own package source instead of the collector's wheel.
    built = wheel.current()
    machine.path(f"/root/{built.filename}").write_bytes(built.content)
    sourced = owner.setup("--package", f"/root/{built.filename}[agent]")
    assert f"==> Installing /root/{built.filename}[agent]" in sourced.stdout
    assert "Downloading" not in sourced.stdout
    assert owner.service("ActiveState") == "active"
    wait_for(
        owner.heartbeat_after(beat),
        "a heartbeat after installing the operator's package",
        timeout=SLOW,
    )

    # Uninstall with no terminal to ask on: everything but the key goes.
    removed = owner.setup("--uninstall")
    assert "keeping the key" in removed.stdout
    assert machine.path(KEY).read_bytes() == key
    assert_gone(machine, keep_key=True)

    # At a terminal the script asks: "n" keeps the key, "y" deletes it, and nothing is left.
    kept = owner.setup("--uninstall", answer="n")
    assert "Delete the worker key" in kept.stdout
    assert_gone(machine, keep_key=True)
    owner.setup("--uninstall", answer="y")
    assert_gone(machine, keep_key=False)


def assert_gone(machine, *, keep_key: bool) -> None:
    assert machine.run("systemctl cat tassium-agent", check=False).returncode != 0
    assert machine.run("id tassium", check=False).returncode != 0
    assert machine.run("getent group tassium", check=False).returncode != 0
    for path in (
        "/etc/systemd/system/tassium-agent.service",
        "/etc/systemd/system/tassium-agent.service.d",
        "/opt/tassium-agent",
        "/etc/tassium",
    ):
        assert not machine.path(path).exists(), path
    state = machine.path("/var/lib/tassium-agent")
    if keep_key:
        assert sorted(p.name for p in state.iterdir()) == ["agent.key"]
    else:
        assert not machine.path("/var/lib/tassium-agent").exists()


def test_an_unsupported_system_is_refused_before_anything_changes(machine, owner):
    machine.run("rm -f /etc/os-release")  # a symlink into /usr/lib on Debian
    machine.path("/etc/os-release").write_text('NAME="Fedora Linux"\nID=fedora\n')
    refused = machine.run(
        f"curl -fsSL '{owner.collector_url}/setup.sh?wallet={owner.wallet}&token={owner.token}'"
        " | bash",
        check=False,
    )
    assert refused.returncode == 1
    assert "only Debian and Ubuntu are supported, this is 'fedora'" in refused.stderr
    assert machine.run("id tassium", check=False).returncode != 0
    assert not machine.path("/opt/tassium-agent").exists()
    assert not machine.path("/etc/tassium").exists()
