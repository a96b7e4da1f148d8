"""What a worker owner does, under a real systemd: the one line the worker client shows,
``curl -s '…/api/setup?wallet=G…' | sh`` typed by the owner's own account with sudo, installs
the agent from a collector on the host; systemd keeps it running (the watchdog restarts a
hung agent), the same script run as root upgrades it with the same key, and --uninstall
leaves nothing behind. What it installs is what the collector pinned: a wheel changed on the
way is refused before anything on the machine changes."""

import json
import shlex
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from packaging.utils import canonicalize_name

from collector.install import wheel
from collector.store.models import EnrollmentChallenge
from protocol.times import utcnow
from tests.factories import FakeWorker, Wallet, connected
from tests.packaging import files_server
from tests.packaging.test_agent_lock import LOCK, pins
from tests.polling import wait_for

# One collector backend is enough here: the routes themselves are tested on both.
pytestmark = [pytest.mark.nspawn, pytest.mark.parametrize("backend", ["sqlite"])]

KEY = "/var/lib/tassium-agent/agent.key"
SPOOL = "/var/lib/tassium-agent/spool"
# Seconds to wait for the machine: installing and restarting under systemd is slow.
SLOW = 60
# The owner's own account on the machine, in Debian's sudo group.
ACCOUNT = "owner"
PASSWORD = "owner's password"
# Short enough for a test, long enough for the agent's pings (every WatchdogSec/2).
WATCHDOG_DROP_IN = """[Service]
WatchdogSec=6
TimeoutAbortSec=3
RestartSec=1
"""


class Owner:
    """A worker owner at a booted machine, with the collector's one line at hand."""

    def __init__(self, machine, collector, database_url: str):
        self.machine = machine
        self.collector = collector
        self.collector_url = collector.url
        self.database_url = database_url
        # The worker client signs in with Freighter: a Stellar wallet.
        self.signer = Wallet("stellar")
        self.wallet = self.signer.address

    @contextmanager
    def signing(self) -> Iterator[None]:
        """While the install runs, the owner signs the challenge its agent waits on, as on
        the collector's page (which the agent's output links to)."""
        done = threading.Event()

        def sign_when_asked() -> None:
            with connected(self.database_url):
                while not done.wait(0.5):
                    for challenge in EnrollmentChallenge.select().where(
                        (EnrollmentChallenge.wallet_address == self.wallet)
                        & EnrollmentChallenge.used_at.is_null()
                    ):
                        httpx.post(
                            f"{self.collector_url}/workers/enroll/challenge/{challenge.id}",
                            json={"signature": self.signer.sign(challenge.message)},
                            timeout=10,
                        )

        owner = threading.Thread(target=sign_when_asked)
        owner.start()
        try:
            yield
        finally:
            done.set()
            owner.join()

    def line_from_the_client(self, account: str = ACCOUNT, check: bool = True):
        """Exactly the line the worker client shows, typed at a terminal by ``account``
        (script(1) gives it a pty; su starts its login shell there), which answers sudo's
        password prompt. --session-command, not -c: -c starts a new session, without the
        terminal sudo asks on."""
        line = f"curl -s '{self.collector_url}/api/setup?wallet={self.wallet}' | sh"
        login = f"su --login {account} --session-command {shlex.quote(line)}"
        return self.machine.run(
            ["script", "-qec", login, "/dev/null"],
            input=PASSWORD + "\n",
            check=check,
            timeout=900,
        )

    def setup(self, *options: str, answer: str | None = None):
        """The script run as root, as ``curl … | sudo bash -s -- OPTIONS`` does; with
        ``answer``, typed at a terminal (script(1) gives the command a pty) the way an owner
        answers the script's question."""
        url = f"{self.collector_url}/setup.sh?wallet={self.wallet}"
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


def add_the_owners_account(machine) -> None:
    """A normal user in the sudo group, with a password, as on a server the owner rents."""
    machine.run(["useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", ACCOUNT])
    machine.run(["chpasswd"], input=f"{ACCOUNT}:{PASSWORD}\n")


@pytest.fixture
def owner(online_machine, serve_collector, database_url) -> Owner:
    let_docker_run_in(online_machine)
    add_the_owners_account(online_machine)
    # As the worker client's collector: Stellar wallets, and its line carries no token. The
    # agent is restarted within seconds below, so heartbeats may come closer than min_interval.
    collector = serve_collector(wallet_format="stellar", min_interval=0)
    return Owner(online_machine, collector, database_url)


def test_install_run_restart_upgrade_uninstall(machine, owner):
    # An account sudo does not allow gets one message, and nothing is installed.
    machine.run(["useradd", "--create-home", "--shell", "/bin/bash", "stranger"])
    refused = owner.line_from_the_client("stranger", check=False)
    assert refused.returncode == 1
    assert refused.stdout.splitlines()[-1] == (
        "tassium setup: error: installing the agent needs root, and sudo did not let stranger"
        " become root (not allowed, or no password typed at a terminal): run this line as"
        " root, or as a user sudo allows"
    )
    assert not machine.path("/opt/tassium-agent").exists()

    # Install: the worker client's line, piped to sh by the owner's account, which sudo lets
    # become root once its password is typed; Docker is installed too.
    with owner.signing():
        installed = owner.line_from_the_client()
    assert f"[sudo] password for {ACCOUNT}:" in installed.stdout
    # The install showed the owner where to sign, and went on once they had.
    assert f"{owner.collector_url}/enroll/" in installed.stdout
    assert f"enrolled {owner.wallet} with key SHA256:" in installed.stdout
    assert "==> Installing python3-venv docker.io" in installed.stdout
    # The agent's dependencies are the lock's, each checked by pip against its hashes.
    assert (
        "==> Installing what the agent needs, each as pinned by its hash in"
        " agent-requirements.txt" in installed.stdout
    )
    frozen = machine.run("/opt/tassium-agent/bin/pip freeze --all").stdout.splitlines()
    assert locked_here() <= {_pinned(*line.split("==")) for line in frozen if "==" in line}
    assert f"==> Done: this worker sends heartbeats for {owner.wallet}" in installed.stdout
    config = machine.path("/etc/tassium/agent.yaml").read_text()
    assert config.endswith(f'wallet: "{owner.wallet}"\nwallet_format: "stellar"\n')
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
    assert f"==> Installing /root/{built.filename}[agent] (not pinned:" in sourced.stdout
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


def assert_untouched(machine) -> None:
    """Nothing of the agent is on the machine, nor anything the script would install first."""
    assert machine.run("id tassium", check=False).returncode != 0
    for path in ("/opt/tassium-agent", "/etc/tassium", "/etc/systemd/system/tassium-agent.service"):
        assert not machine.path(path).exists(), path
    venv = machine.run("dpkg-query -W -f='${Status}' python3-venv", check=False).stdout
    assert "install ok installed" not in venv
    # Nor the download, in the machine's own /tmp.
    assert machine.run("find /tmp -mindepth 1 -maxdepth 1 -name 'tmp.*'").stdout == ""


def test_a_changed_wheel_or_an_unsupported_system_is_refused_before_anything_changes(
    machine, owner
):
    # One machine for both: booting is most of what each costs.
    # A proxy between the worker and the collector changes one byte of the wheel on the way.
    built = wheel.current()
    proxy = files_server.tampering_proxy(owner.collector_url, changed=".whl")
    with files_server.serving(proxy) as url:
        line = f"curl -fsSL '{url}/setup.sh?wallet={owner.wallet}' | bash"
        changed = machine.run(line, check=False)
    assert changed.returncode == 1
    assert changed.stderr.splitlines()[-1] == (
        f"tassium setup: error: the agent wheel from {url}/packages/{built.filename} does not"
        f" match the collector's sha256 {built.sha256}: it was changed on the way; nothing was"
        " installed"
    )
    assert_untouched(machine)

    machine.run("rm -f /etc/os-release")  # a symlink into /usr/lib on Debian
    machine.path("/etc/os-release").write_text('NAME="Fedora Linux"\nID=fedora\n')
    refused = machine.run(
        f"curl -fsSL '{owner.collector_url}/setup.sh?wallet={owner.wallet}' | bash", check=False
    )
    assert refused.returncode == 1
    assert "only Debian and Ubuntu are supported, this is 'fedora'" in refused.stderr
    assert_untouched(machine)


def _pinned(name: str, version: str) -> str:
    # pip freeze writes a distribution's own spelling (typing_extensions), the lock PEP 503's.
    return f"{canonicalize_name(name)}=={version}"


def locked_here() -> set[str]:
    """The lock's pins for this kind of machine (the booted Debian's Python, on Linux, is this
    interpreter's version): a pin for Windows, or for another Python, is not installed."""
    return {
        _pinned(pin.requirement.name, str(pin.requirement.specifier).removeprefix("=="))
        for pin in pins(LOCK.read_text())
        if pin.requirement.marker is None or pin.requirement.marker.evaluate()
    }
