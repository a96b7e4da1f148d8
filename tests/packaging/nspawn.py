"""A real systemd booted in a throw-away Debian root with ``systemd-nspawn``, for tests of
what we install on a server (the install script, the units) without a VM.

The Debian root is built once with debootstrap and cached under CACHE_DIR; each machine
boots an overlay of it (or a copy where overlayfs is not available), so nothing a test does
reaches the cache. The container shares the host's network: a server a test starts on the
host's 127.0.0.1 is reachable from inside at the same address.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What a fresh minimal server has (sudo, for its owner's account), plus what the tests drive
# it with. Not python3-venv: the install script under test must install that itself.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "ca-certificates",
    "curl",
    "procps",
    "sudo",
)
# Bump when _customise changes, so that cached roots built the old way are not reused.
RECIPE = 2
CACHE_DIR = Path("/var/cache/tassium-tests")
HOSTNAME = "tassium-test"
# Host programs the harness runs, and the Debian package of each.
TOOLS = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "nsenter": "util-linux",
}
# What commands run inside see instead of the test's environment.
BASE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
# Mounted afresh inside the container, so the host path under the root does not show them.
PRIVATE_DIRS = ("/dev", "/proc", "/run", "/sys", "/tmp")
BOOTED_STATES = ("running", "degraded")


class MachineError(RuntimeError):
    """The machine could not be built or booted; the message has the log's tail."""


class CommandFailed(subprocess.CalledProcessError):
    """A command inside the machine failed; unlike its base class, shows what it printed."""

    def __str__(self) -> str:
        printed = f"--- stdout\n{self.stdout.rstrip()}\n--- stderr\n{self.stderr.rstrip()}"
        return f"{super().__str__()}\n{printed}"


def missing_requirements() -> list[str]:
    """Why machines cannot run here; empty when they can."""
    problems = [
        f"{tool} not found (apt-get install {package})"
        for tool, package in TOOLS.items()
        if shutil.which(tool) is None
    ]
    if os.geteuid() != 0:
        problems.append("systemd-nspawn and debootstrap need root")
    return problems


def log_tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    # The console is a pty: lines end in \r\r\n, which read_text() would make two.
    return "\n".join(text.replace("\r", "").splitlines()[-lines:])


# --- the cached Debian root ------------------------------------------------------------------


def cached_root(cache_dir: Path = CACHE_DIR) -> Path:
    """The Debian root for PACKAGES, built on first use (about a minute) and then reused. Never
    boot it directly: Machine boots an overlay of it."""
    recipe = {"suite": SUITE, "mirror": MIRROR, "packages": sorted(PACKAGES), "recipe": RECIPE}
    key = hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:12]
    final = cache_dir / f"{SUITE}-{key}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Two test runs at once must not both build it: the second waits, then finds it.
    with _locked(cache_dir / f"{final.name}.lock"):
        if final.is_dir():
            return final
        for stale in cache_dir.glob(f".{final.name}.building-*"):
            remove_tree(stale)  # left by a build that was killed; we hold the lock
        building = Path(tempfile.mkdtemp(prefix=f".{final.name}.building-", dir=cache_dir))
        try:
            building.chmod(0o755)  # the root directory of the machine; mkdtemp makes it 0700
            _debootstrap(building, cache_dir / f"{final.name}.log")
            _customise(building)
        except BaseException:
            remove_tree(building)
            raise
        # A rename is atomic: a root under the final name is always complete.
        building.rename(final)
    return final


def one_at_a_time(cache_dir: Path = CACHE_DIR) -> contextlib.AbstractContextManager[None]:
    """Held while machines run, by every test process on this host (pytest-xdist's workers,
    other test runs): booted with --keep-unit, each machine's systemd manages the cgroups of
    the process that boots it, the same for all of them, so one machine would stop or kill
    the other's services of the same name."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    return _locked(cache_dir / "machines.lock")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _debootstrap(root: Path, log: Path) -> None:
    with log.open("wb") as output:
        result = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(root),
                MIRROR,
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        raise MachineError(f"debootstrap exited with {result.returncode}:\n{log_tail(log)}")


def _customise(root: Path) -> None:
    # debootstrap copies the host's name; a machine of our own is easier to recognise in logs.
    (root / "etc/hostname").write_text(f"{HOSTNAME}\n")
    (root / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {HOSTNAME}\n")
    # Empty, as in Debian's images: systemd makes up a new id at each boot, so no two
    # machines share one. D-Bus's copy, made by debootstrap, would be used instead: share ours.
    (root / "etc/machine-id").write_text("")
    dbus_id = root / "var/lib/dbus/machine-id"
    dbus_id.unlink(missing_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    # A server installed from an image has no package lists: the install script must run
    # apt-get update itself, whatever the age of this cache. The .debs are only dead weight.
    for leftover in ("var/lib/apt/lists", "var/cache/apt/archives"):
        for path in (root / leftover).glob("*"):
            if path.is_file():
                path.unlink()


def remove_tree(path: Path) -> None:
    """Delete a root, never what is mounted inside it (debootstrap mounts /proc while it runs,
    overlays are mounted on machine roots)."""
    if not path.exists():
        return
    for mountpoint in sorted(_mounts_under(path), reverse=True):
        subprocess.run(["umount", "--lazy", mountpoint], check=False, capture_output=True)
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1].replace("\\040", " ") for line in mounts]
    return [point for point in points if point == prefix or point.startswith(prefix + "/")]


# --- a booted machine ------------------------------------------------------------------------


class Machine:
    """One container booted from ``base``, with its root, logs and overlay under ``workdir``.

    ``bind_ro`` maps host paths to in-container paths mounted read-only. Use as a context
    manager, or call boot() and shutdown(); shutdown() leaves nothing running or mounted.
    """

    def __init__(
        self,
        base: Path,
        workdir: Path,
        *,
        bind_ro: Mapping[Path | str, str] | None = None,
        boot_timeout: float = 90,
    ):
        self.base = base
        self.workdir = workdir
        self.root = workdir / "root"
        self.log = workdir / "boot.log"
        self.name = f"tassium-{uuid.uuid4().hex[:8]}"  # nspawn keys its state in /run by it
        self.bind_ro = dict(bind_ro or {})
        self.boot_timeout = boot_timeout
        self.leader: int | None = None  # the container's PID 1, as the host sees it
        self._leader_fd: int | None = None  # a pidfd: signals never reach a reused pid
        self._process: subprocess.Popen | None = None
        self._overlay = False

    def __enter__(self) -> "Machine":
        self.boot()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def boot(self) -> None:
        """Start the container and wait until its systemd has finished booting."""
        try:
            self._prepare_root()
            self._start()
            self._wait_booted()
        except BaseException:
            self.shutdown()
            raise

    def run(
        self,
        cmd: str | Sequence[str],
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float = 300,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside as root (a string goes to ``sh -c``), with BASE_ENV plus ``env``
        as its whole environment, in /. Raises CommandFailed when it fails and ``check``."""
        if self.leader is None:
            raise MachineError(f"{self.name} is not running")
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        variables = [f"{name}={value}" for name, value in {**BASE_ENV, **(env or {})}.items()]
        # The cgroup namespace too, for the container's view of /sys/fs/cgroup; the command
        # itself stays in the test's cgroup (/proc/self/cgroup reads "/.." inside).
        enter = ["nsenter", f"--target={self.leader}"]
        enter += ["--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup"]
        result = subprocess.run(
            [*enter, "env", "-i", *variables, *argv],
            input=input,
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise CommandFailed(result.returncode, argv, result.stdout, result.stderr)
        return result

    def path(self, path: str | PurePosixPath) -> Path:
        """Where the in-container absolute ``path`` is on the host, to read or write it
        directly. Symbolic links in the root point into the host's tree: resolve none."""
        inside = PurePosixPath(path)
        if not inside.is_absolute():
            raise ValueError(f"{path!r} is not absolute")
        for private in PRIVATE_DIRS:
            if inside.is_relative_to(private):
                raise ValueError(f"{private} inside is not the root's {private}: use run()")
        return self.root / inside.relative_to("/")

    def shutdown(self) -> None:
        """Power off cleanly (nspawn turns SIGTERM into a poweroff), kill what is left after
        30 s, then unmount and delete the root. Safe to call twice."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)
                try:
                    self._process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self._kill()
            self._process = None
        if self._leader_fd is not None:
            # A leader outliving nspawn would keep the whole container running.
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._leader_fd, signal.SIGKILL)
            os.close(self._leader_fd)
            self._leader_fd = None
        self.leader = None
        # Only the root: a failed test's boot log stays for reading.
        if self._overlay:
            subprocess.run(["umount", str(self.root)], check=False, capture_output=True)
            self._overlay = False
        for tree in ("root", "upper", "work"):
            remove_tree(self.workdir / tree)

    def _prepare_root(self) -> None:
        upper, work = self.workdir / "upper", self.workdir / "work"
        for directory in (self.root, upper, work):
            directory.mkdir(parents=True)
        options = f"lowerdir={self.base},upperdir={upper},workdir={work}"
        mount = ["mount", "-t", "overlay", "overlay", "-o", options, str(self.root)]
        if subprocess.run(mount, check=False, capture_output=True).returncode == 0:
            self._overlay = True
            return
        # overlayfs cannot put its upper layer on every file system (overlayfs itself, for
        # one): copy instead, which takes seconds rather than nothing.
        subprocess.run(["cp", "-a", "--reflink=auto", f"{self.base}/.", str(self.root)], check=True)

    def _start(self) -> None:
        command = [
            "systemd-nspawn",
            f"--directory={self.root}",
            f"--machine={self.name}",
            "--boot",
            # systemd is not PID 1 on every host running the tests (CI containers): neither
            # register with machined nor ask systemd for a scope unit.
            "--register=no",
            "--keep-unit",
            # No --private-network: the test's servers on the host's 127.0.0.1 must be
            # reachable. The host's resolver then works inside as it is.
            "--resolv-conf=copy-host",
            "--console=read-only",  # the boot messages go to the log
            *[f"--bind-ro={source}:{target}" for source, target in self.bind_ro.items()],
        ]
        with self.log.open("wb") as output:  # the child keeps its own descriptor
            # A process group of its own, so that a stuck container can be killed whole.
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={"PATH": BASE_ENV["PATH"], "TERM": "dumb", "SYSTEMD_COLORS": "0"},
                start_new_session=True,
            )

    def _wait_booted(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.boot_timeout
        state = "(no PID 1 yet)"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise MachineError(
                    f"systemd-nspawn exited with {self._process.returncode} while booting:\n"
                    f"{log_tail(self.log)}"
                )
            if self.leader is None:
                self._find_leader()
            if self.leader is not None:
                result = self.run(["systemctl", "is-system-running"], check=False, timeout=10)
                state = (result.stdout or result.stderr).strip()
                if state in BOOTED_STATES:
                    return
            time.sleep(0.2)
        raise MachineError(
            f"{self.name} did not boot in {self.boot_timeout:g} s "
            f"(systemctl is-system-running: {state}):\n{log_tail(self.log)}"
        )

    def _find_leader(self) -> None:
        # The container's PID 1 is the child of nspawn in another PID namespace (nspawn forks
        # a helper in ours first).
        assert self._process is not None
        ours = os.readlink("/proc/self/ns/pid")
        for children in Path(f"/proc/{self._process.pid}/task").glob("*/children"):
            for pid in map(int, children.read_text().split()):
                try:
                    if os.readlink(f"/proc/{pid}/ns/pid") != ours:
                        self._leader_fd = os.pidfd_open(pid)
                        self.leader = pid
                        return
                except (FileNotFoundError, ProcessLookupError):
                    continue  # exited between the listing and now

    def _kill(self) -> None:
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)  # before wait(): the group is ours
        self._process.wait()
