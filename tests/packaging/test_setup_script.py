"""The install script on this machine, without systemd: its options are checked before
anything happens, and refusals are clear. Installing for real is in test_install_under_systemd."""

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from collector.config import RULES
from collector.errors import ApiError
from collector.install import wheel
from collector.install.setup import SCRIPT_PATTERNS, render
from collector.uptime.enrollment import validate_token
from protocol.wallets import InvalidWallet, normalize_wallet
from tests.packaging import files_server
from tests.packaging.installer import installer
from tests.protocol.pattern_cases import CASES, INJECTIONS

SCRIPT = Path(__file__).parents[2] / "packaging" / "setup.sh"
WALLET = "0x52908400098527886E0F7030069857D2E4169EE7"
TOKEN = "tsk_" + "A" * 43
GOOD = ["--wallet", WALLET, "--collector", "http://127.0.0.1:8000"]


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``bash setup.sh ARGS`` as root, from the checkout. A normal user's prologue would ask
    sudo first (test_setup_under_sh tries that): the installer is then run as it would be."""
    if os.geteuid() == 0:
        command, text = ["bash", str(SCRIPT), *args], None
    else:
        command = ["bash", "-s", "--", str(SCRIPT.parent), *args]
        text = installer(SCRIPT.read_text())
    return subprocess.run(
        command, input=text, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def no_docker_warning() -> str:
    # Imported here: that module imports this one's machine.
    from tests.collector.install.test_unpaid_warning import NO_DOCKER

    return NO_DOCKER


@pytest.mark.parametrize("shell", ["sh", "dash", "bash"])
def test_the_script_is_valid_sh_and_bash(shell):
    result = subprocess.run([shell, "-n", str(SCRIPT)], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")


def test_the_installer_is_valid_bash():
    # The whole script's check never parses the here-document: this one does.
    result = subprocess.run(
        ["bash", "-n"], input=installer(SCRIPT.read_text()), capture_output=True, text=True
    )
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="needs shellcheck")
def test_shellcheck_finds_nothing():
    # The prologue as sh (the shebang says so), then the installer, which it does not read.
    for command, text in [
        (["shellcheck", str(SCRIPT)], None),
        (["shellcheck", "--shell=bash", "-"], installer(SCRIPT.read_text())),
    ]:
        result = subprocess.run(command, input=text, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


def test_help_describes_the_options(tmp_path):
    result = run_script("--help", cwd=tmp_path)
    assert result.returncode == 0
    options = ("--wallet", "--token", "--collector", "--no-docker", "--docker-host", "--uninstall")
    for option in options:
        assert option in result.stdout


def test_an_unknown_option_is_refused(tmp_path):
    result = run_script("--wallet", WALLET, "--frobnicate", cwd=tmp_path)
    assert result.returncode == 1
    assert "unknown option: --frobnicate" in result.stderr


def test_an_option_without_its_value_is_refused(tmp_path):
    result = run_script("--wallet", cwd=tmp_path)
    assert result.returncode == 1
    assert "--wallet needs a value" in result.stderr


@pytest.mark.parametrize("payload", INJECTIONS)
@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--wallet", "the wallet must be 0x and 40 hexadecimal digits"),
        ("--collector", "the collector URL must be http(s)://host"),
        ("--token", "the token must be an enrollment token"),
        ("--package", "the package must be a pip requirement"),
    ],
)
def test_a_bad_value_is_refused_before_anything_runs(tmp_path, option, message, payload):
    args = dict(zip(GOOD[::2], GOOD[1::2], strict=True))
    args[option] = payload
    result = run_script(*[part for pair in args.items() for part in pair], cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert not (tmp_path / "MARKER").exists()


def test_an_unknown_wallet_format_is_refused(tmp_path):
    result = run_script(*GOOD, "--wallet-format", "$(touch MARKER)", cwd=tmp_path)
    assert result.returncode == 1
    assert "unknown wallet format" in result.stderr
    assert not (tmp_path / "MARKER").exists()


def test_a_stellar_wallet_needs_the_stellar_format(tmp_path):
    stellar = "GBRPYHIL2CI3FNQ4BXLFMNDLFJUNPU2HY3ZMFSHONUCEOASW7QC7OX2H"
    refused = run_script("--wallet", stellar, "--collector", "http://x", cwd=tmp_path)
    assert "the wallet must be 0x and 40 hexadecimal digits" in refused.stderr
    accepted = run_script(
        "--wallet", stellar, "--wallet-format", "stellar", "--collector", "http://x", cwd=tmp_path
    )
    assert "wallet" not in accepted.stderr


def test_a_wallet_of_the_wrong_length_is_refused(tmp_path):
    result = run_script("--wallet", WALLET[:-1], "--collector", "http://x", cwd=tmp_path)
    assert result.returncode == 1
    assert "the wallet must be 0x and 40 hexadecimal digits" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_the_installer_must_run_as_root(tmp_path):
    # The prologue sees to that; the installer checks again, run without it as here.
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-s", "--", ""]
        + [*GOOD, "--token", TOKEN],
        input=installer(SCRIPT.read_text()),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "run me as root" in result.stderr


@pytest.mark.skipif(Path("/run/systemd/system").is_dir(), reason="this machine runs systemd")
@pytest.mark.skipif(os.geteuid() != 0, reason="the root check comes first")
def test_it_refuses_a_machine_without_systemd(tmp_path):
    result = run_script(*GOOD, cwd=tmp_path)
    assert result.returncode == 1
    assert "systemd is not running" in result.stderr


# --- the rules are the collector's ----------------------------------------------------------

# The table of values for each rule, and the variable the script reads that value from.
FIELDS = {
    "COLLECTOR_URL": "COLLECTOR_URL",
    "EVM_WALLET": "WALLET",
    "STELLAR_WALLET": "WALLET",
    "ENROLLMENT_TOKEN": "TOKEN",
    "PIP_REQUIREMENT": "PACKAGE",
}


def script_assignments(script: str) -> dict[str, str]:
    """Each ``NAME=value`` line of the script's top level, as the shell reads its value."""
    found = {}
    for line in script.splitlines():
        name, equals, value = line.partition("=")
        if equals and name.isidentifier() and name.isupper():
            (found[name],) = shlex.split(value)
    return found


def test_the_script_carries_the_collectors_own_patterns():
    script = SCRIPT.read_text()
    assignments = script_assignments(script)
    assert {k: v for k, v in assignments.items() if k.endswith("_RE")} == SCRIPT_PATTERNS
    # The collector serves the file with its patterns filled in: that changes nothing.
    assert render(script, SCRIPT_PATTERNS) == script


def test_the_script_checks_values_only_through_those_patterns():
    script = SCRIPT.read_text()
    # One =~, in the function that anchors a pattern variable; no rule of its own elsewhere.
    assert script.count("=~") == 1
    for name in SCRIPT_PATTERNS:
        assert f'"${name}"' in script.partition("\nvalidate_options() {")[2].partition("\n}")[0]


def python_accepts(rule: str, value: str) -> bool:
    """What the collector says of a value: the very checks it applies before serving one."""
    try:
        if rule == "COLLECTOR_URL":
            return RULES["public_url"].check(value)
        if rule == "PIP_REQUIREMENT":
            return RULES["agent_package"].check(value)
        if rule == "ENROLLMENT_TOKEN":
            validate_token(value)
        else:
            normalize_wallet(value, "stellar" if rule == "STELLAR_WALLET" else "evm")
    except (ApiError, InvalidWallet):
        return False
    return True


def script_accepts(pairs: list[tuple[str, str]], cwd: Path) -> list[bool]:
    """Whether the script's own validate_options passes, for each (variable, value) with the
    other values good; one bash runs the script's functions (not main) for them all."""
    script = installer(SCRIPT.read_text())
    functions = script.removesuffix('main "$@"\n')
    assert functions != script
    driver = f"""
check() {{
    COLLECTOR_URL=http://127.0.0.1:8000 WALLET={WALLET} WALLET_FORMAT=evm TOKEN='' PACKAGE=''
    [[ $1 != STELLAR ]] || {{ WALLET_FORMAT=stellar; set -- WALLET "$2"; }}
    printf -v "$1" '%s' "$2"
    validate_options
}}
while IFS= read -r -d '' name && IFS= read -r -d '' value; do
    if (check "$name" "$value") >/dev/null 2>&1; then printf 1; else printf 0; fi
done
"""
    result = subprocess.run(
        ["bash", "-c", functions + driver, "setup.sh"],
        input="".join(f"{name}\0{value}\0" for name, value in pairs).encode(),
        cwd=cwd,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, b"")
    return [flag == "1" for flag in result.stdout.decode()]


def test_the_script_and_the_collector_agree_on_every_value(tmp_path):
    cases = [
        (rule, value)
        for rule, (_, table) in CASES.items()
        for value in table
        # Empty, a token or package is not given at all: see the next test.
        if value or rule in ("COLLECTOR_URL", "EVM_WALLET", "STELLAR_WALLET")
    ]
    variables = [
        ("STELLAR" if rule == "STELLAR_WALLET" else FIELDS[rule], value) for rule, value in cases
    ]
    by_script = script_accepts(variables, tmp_path)
    by_python = [python_accepts(rule, value) for rule, value in cases]
    disagreements = [
        (rule, value, script, python)
        for (rule, value), script, python in zip(cases, by_script, by_python, strict=True)
        if script != python
    ]
    assert disagreements == []
    # The table says which values are good: both sides follow it.
    assert by_python == [CASES[rule][1][value] for rule, value in cases]
    assert ("COLLECTOR_URL", "http://a:b:c") in cases
    assert not (tmp_path / "MARKER").exists()


def test_an_empty_token_or_package_is_one_not_given(tmp_path):
    assert script_accepts([("TOKEN", ""), ("PACKAGE", "")], tmp_path) == [True, True]


# --- what is installed is what the collector pinned -----------------------------------------

SHA256_VALUES = {
    "0" * 64: True,
    "0123456789abcdef" * 4: True,
    "0" * 63: False,
    "0" * 65: False,
    "0123456789ABCDEF" * 4: False,
    "g" + "0" * 63: False,
    "0" * 64 + "\n": False,
    " " + "0" * 64: False,
    "$(touch MARKER)": False,
}


def test_the_script_and_the_collector_agree_on_every_sha256(tmp_path):
    pairs = [(name, value) for name in ("WHEEL_SHA256", "LOCK_SHA256") for value in SHA256_VALUES]
    assert script_accepts(pairs, tmp_path) == [SHA256_VALUES[value] for _, value in pairs]
    python = [re.fullmatch(SCRIPT_PATTERNS["SHA256_RE"], value) is not None for _, value in pairs]
    assert python == [SHA256_VALUES[value] for _, value in pairs]
    assert not (tmp_path / "MARKER").exists()


# Each command of the installer that changes a machine, asks dpkg about it or downloads
# stands in as a stub that records its call; the installer runs with no other program than
# these and TOOLS.
STUBS = (
    "apt-get",
    "curl",
    "dpkg-query",
    "getent",
    "gpasswd",
    "groupadd",
    "id",
    "install",
    "journalctl",
    "python3",
    "runuser",
    "systemctl",
    "useradd",
    "userdel",
    "usermod",
)
TOOLS = ("bash", "cat", "cmp", "grep", "mktemp", "rm", "seq", "sha256sum")
# Asks, or downloads into TMPDIR: all a refused install may have run.
HARMLESS = {"dpkg-query", "getent", "id", "curl"}
RECORD = """#!/bin/sh
{{ printf '%s' "${{0##*/}}"; printf ' %s' "$@"; echo; }} >>{calls}
"""
# dpkg has everything installed; curl is the real one; `python3 -m venv DIR` makes DIR/bin/pip,
# a stub that keeps a copy of each file it is given to install.
DPKG_QUERY = RECORD + "printf 'install ok installed'\n"
CURL = RECORD + 'exec {curl} "$@"\n'
PYTHON3 = (
    RECORD
    + """[ "$1 $2" = "-m venv" ] || exit 0
{mkdir} -p "$3/bin"
{cp} {pip} "$3/bin/pip"
"""
)
PIP = (
    RECORD
    + """for argument; do
    [ ! -f "$argument" ] || {cp} "$argument" {given}/
done
"""
)


class Worker:
    """A served script's installer run whole (main, not only its checks) as root on a machine
    where every command that would change it is a stub, and its paths are under ``root``."""

    def __init__(self, root: Path):
        self.root = root
        self.calls = root / "calls"
        self.given = root / "given-to-pip"  # what pip was handed, as it was then
        self.tmp = root / "tmp"
        bin_dir = root / "bin"
        for directory in (self.given, self.tmp, bin_dir):
            directory.mkdir()
        self.calls.touch()
        real = {name: shutil.which(name) for name in (*TOOLS, "mkdir", "cp", "curl")}
        assert all(real.values()), real
        for tool in TOOLS:
            (bin_dir / tool).symlink_to(real[tool])
        names = {"calls": self.calls, "given": self.given, "mkdir": real["mkdir"]}
        names |= {"cp": real["cp"], "curl": real["curl"], "pip": root / "pip"}
        scripts = {"dpkg-query": DPKG_QUERY, "curl": CURL, "python3": PYTHON3}
        for name in STUBS:
            self._write(bin_dir / name, scripts.get(name, RECORD).format(**names))
        self._write(root / "pip", PIP.format(**names))
        self.path = str(bin_dir)
        self.own = {p.name for p in root.iterdir()}

    @staticmethod
    def _write(path: Path, text: str) -> None:
        path.write_text(text)
        path.chmod(0o755)

    def install(self, script: str, *options: str) -> subprocess.CompletedProcess:
        paths = {
            "PREFIX": "opt/tassium-agent",
            "CONFIG_DIR": "etc/tassium",
            "CONFIG": "etc/tassium/agent.yaml",
            "STATE_DIR": "var/lib/tassium-agent",
            "KEY": "var/lib/tassium-agent/agent.key",
            "UNIT_DIR": "etc/systemd/system",
            "UNIT": "etc/systemd/system/tassium-agent.service",
        }
        functions = installer(script).removesuffix('main "$@"\n')
        assert functions != installer(script)
        driver = "".join(f"{name}={shlex.quote(str(self.root / p))}\n" for name, p in paths.items())
        # Which system this is, and whether it runs systemd, are the machine test's to check.
        driver += "check_system() { :; }\n" + 'main "$@"\n'
        return subprocess.run(
            ["bash", "-c", functions + driver, "setup.sh", "", *options],
            cwd=self.root,
            env={"PATH": self.path, "TMPDIR": str(self.tmp), "LANG": "C.UTF-8"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def commands(self) -> list[str]:
        return self.calls.read_text().splitlines()

    def changes(self) -> dict[str, list[str]]:
        """What the run changed, or left behind: every command but the harmless ones, anything
        left in TMPDIR, any path made under the worker's root."""
        return {
            "commands": [c for c in self.commands() if c.split()[0] not in HARMLESS],
            "left in TMPDIR": [p.name for p in self.tmp.iterdir()],
            "made": sorted({p.name for p in self.root.iterdir()} - self.own),
        }


NOTHING = {"commands": [], "left in TMPDIR": [], "made": []}


@pytest.fixture
def worker(tmp_path) -> Worker:
    root = tmp_path / "worker"
    root.mkdir()
    return Worker(root)


@pytest.fixture
def genuine(make_app) -> dict[str, bytes]:
    """What the collector serves at /packages, by path."""
    built, lock = wheel.current(), wheel.lock()
    return {f"/packages/{p.filename}": p.content for p in (built, lock)}


def script_from(make_app, url: str, **settings) -> str:
    """The collector's script for a worker whose collector is at ``url`` (its public_url)."""
    client = make_app(public_url=url, **settings).test_client()
    response = client.get(f"/setup.sh?wallet={WALLET}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def test_a_wheel_changed_on_the_way_is_refused_and_nothing_changes(make_app, worker, genuine):
    built = wheel.current()
    path = f"/packages/{built.filename}"
    served = genuine | {path: files_server.one_byte_changed(genuine[path])}
    with files_server.serving(files_server.files(served)) as url:
        result = worker.install(script_from(make_app, url), "--no-docker")
    assert result.returncode == 1
    assert result.stderr == (
        f"tassium setup: error: the agent wheel from {url}{path} does not match the collector's"
        f" sha256 {built.sha256}: it was changed on the way; nothing was installed\n"
    )
    assert result.stdout.endswith(f"==> Downloading {built.filename} from the collector\n")
    assert worker.changes() == NOTHING


def test_a_lock_changed_on_the_way_is_refused_and_nothing_changes(make_app, worker, genuine):
    lock = wheel.lock()
    path = "/packages/agent-requirements.txt"
    served = genuine | {path: files_server.one_byte_changed(genuine[path])}
    with files_server.serving(files_server.files(served)) as url:
        result = worker.install(script_from(make_app, url), "--no-docker")
    assert result.returncode == 1
    assert result.stderr == (
        f"tassium setup: error: the agent's requirements lock from {url}{path} does not match"
        f" the collector's sha256 {lock.sha256}: it was changed on the way; nothing was"
        " installed\n"
    )
    assert worker.changes() == NOTHING


def test_a_download_that_fails_stops_the_install_before_anything_changes(make_app, worker, genuine):
    served = {path: data for path, data in genuine.items() if path.endswith(".whl")}
    with files_server.serving(files_server.files(served)) as url:
        result = worker.install(script_from(make_app, url), "--no-docker")
    assert result.returncode == 1
    assert result.stderr == (
        "curl: (22) The requested URL returned error: 404\n"
        "tassium setup: error: could not download the agent's requirements lock from"
        f" {url}/packages/agent-requirements.txt (curl says why above); nothing was installed\n"
    )
    assert worker.changes() == NOTHING


def test_the_checked_files_are_what_pip_installs_after_the_lock_and_its_hashes(
    make_app, worker, genuine
):
    # The control of the refusals above: with the genuine files, the same run goes on and
    # changes the machine (in its stubs) once both are downloaded and checked.
    built = wheel.current()
    with files_server.serving(files_server.files(genuine)) as url:
        result = worker.install(script_from(make_app, url), "--no-docker")
    # Its one line on stderr: without Docker, the worker is not paid.
    assert (result.returncode, result.stderr) == (0, no_docker_warning())
    ran = [line.split()[0] for line in worker.commands()]
    assert ran.count("curl") == 2
    last_download = len(ran) - ran[::-1].index("curl")
    assert set(ran[:last_download]) <= HARMLESS
    assert {"getent", "usermod", "install", "python3", "pip", "systemctl"} <= set(ran)
    pip = [line.split()[1:] for line in worker.commands() if line.startswith("pip ")]
    install = ["install", "--quiet", "--disable-pip-version-check"]
    download = [arg for args in pip for arg in args if arg.startswith(str(worker.tmp))]
    assert len(download) == 2, pip
    lock, wheel_file = download
    assert pip == [
        [*install, "--require-hashes", "--only-binary=:all:", "--requirement", lock],
        [*install, "--force-reinstall", "--no-deps", wheel_file],
    ]
    assert (worker.given / "agent-requirements.txt").read_bytes() == wheel.lock().content
    assert (worker.given / built.filename).read_bytes() == built.content
    # The downloads are gone once installed.
    assert not any(worker.tmp.iterdir())


def test_an_operators_agent_package_is_said_to_be_unpinned(make_app, worker):
    package = "tassium[agent]==0.1.0"
    with files_server.serving(files_server.files({})) as url:
        result = worker.install(script_from(make_app, url, agent_package=package), "--no-docker")
    assert (result.returncode, result.stderr) == (0, no_docker_warning())
    assert "Downloading" not in result.stdout
    assert (
        f"==> Installing {package} (not pinned: pip installs whatever its index serves for it)"
        in result.stdout.splitlines()
    )
    pip = [line for line in worker.commands() if line.startswith("pip ")]
    assert pip == [f"pip install --quiet --disable-pip-version-check --upgrade {package}"]


def test_a_wheel_without_its_hashes_is_refused(tmp_path):
    script = render(
        SCRIPT.read_text(),
        {
            "COLLECTOR_URL": "https://collector.example",
            "WALLET": WALLET,
            "WHEEL_URL": "https://collector.example/packages/tassium-0.1.0-py3-none-any.whl",
        },
    )
    functions = installer(script).removesuffix('main "$@"\n')
    result = subprocess.run(
        ["bash", "-c", functions + "validate_options\n"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "the collector's wheel comes with its sha256" in result.stderr


# --- rootless Docker: --docker-host -----------------------------------------------------------

SOCKET = "unix:///run/user/999/docker.sock"
DOCKER_HOST_VALUES = {
    SOCKET: True,
    "unix:///var/run/docker.sock": True,
    "unix:///home/tassium/.docker/run/docker.sock": True,
    "unix:///run/user/999/docker_2.sock": True,
    "unix://run/user/999/docker.sock": False,  # relative
    "unix://docker.sock": False,
    "unix:///": False,
    "unix:///run/user/999/": False,
    "unix:///run/user/../docker.sock": False,
    "unix:///run/user/./docker.sock": False,
    "unix:///run//docker.sock": False,
    "unix:///run/user/999/docker sock": False,
    "unix:///run/user/999/docker.sock\n": False,
    "unix:///run/user/999/docker.sock\nprotecthome=no": False,
    'unix:///run/user/999/"docker.sock': False,
    "unix:///run/user/999/'docker.sock": False,
    "unix:///run/user/999/$(touch MARKER)": False,
    "unix:///run/user/999/`touch MARKER`": False,
    "unix:///run/user/999/docker.sock;touch MARKER": False,
    "unix:///run/user/999/d\\ocker.sock": False,
    "unix:///tmp/docker.sock": False,  # the unit's PrivateTmp=yes hides it
    "unix:///var/tmp/docker.sock": False,
    "unix:///" + "a" * 107: False,  # longer than a socket's path may be
    "unix:///" + "a" * 106: True,
    "tcp://127.0.0.1:2375": False,
    "ssh://tassium@localhost": False,
    "http://localhost/docker.sock": False,
    "/run/user/999/docker.sock": False,
    "UNIX:///run/user/999/docker.sock": False,
    " unix:///run/user/999/docker.sock": False,
}


def test_the_script_accepts_only_a_sockets_absolute_path_as_docker_host(tmp_path):
    pairs = [("DOCKER_HOST_URL", value) for value in DOCKER_HOST_VALUES]
    assert script_accepts(pairs, tmp_path) == list(DOCKER_HOST_VALUES.values())
    assert not (tmp_path / "MARKER").exists()


@pytest.mark.parametrize(
    "payload",
    [
        value
        for value, good in DOCKER_HOST_VALUES.items()
        # Those two have sentences of their own.
        if not good and "/tmp/" not in value and len(value) < 100
    ]
    + list(INJECTIONS),
)
def test_a_bad_docker_host_is_refused_before_anything_runs(tmp_path, payload):
    result = run_script(*GOOD, "--docker-host", payload, cwd=tmp_path)
    assert result.returncode == 1
    assert "tassium setup: error: the Docker host must be a socket's absolute path" in result.stderr
    assert not (tmp_path / "MARKER").exists()


def test_a_docker_host_under_tmp_is_refused_saying_why(tmp_path):
    result = run_script(*GOOD, "--docker-host", "unix:///tmp/docker.sock", cwd=tmp_path)
    assert result.returncode == 1
    assert "the agent has its own /tmp and /var/tmp (PrivateTmp=yes)" in result.stderr


# dpkg has everything but docker.io; the user exists, in the docker group, when {groups} does;
# install really installs (as this user: no -o, -g), under the worker's root.
DPKG_WITHOUT_DOCKER = (
    RECORD
    + """[ "$3" != docker.io ] || exit 1
printf 'install ok installed'
"""
)
ID = (
    RECORD
    + """case $1 in
    -nG) [ ! -e {groups} ] || echo tassium docker ;;
    *) [ -e {groups} ] ;;
esac
"""
)
INSTALL = """#!{bash}
{{ printf '%s' "${{0##*/}}"; printf ' %s' "$@"; echo; }} >>{calls}
arguments=()
while (($#)); do
    case $1 in
        -o | -g) shift 2 ;;
        *) arguments+=("$1"); shift ;;
    esac
done
exec {install} "${{arguments[@]}}"
"""


def writing(worker: Worker) -> Worker:
    """The worker with its files really written under its root, and docker.io not installed."""
    bin_dir = Path(worker.path)
    names = {"calls": worker.calls, "groups": worker.root / "in-docker-group"}
    names |= {"bash": shutil.which("bash"), "install": shutil.which("install")}
    for name, text in [("dpkg-query", DPKG_WITHOUT_DOCKER), ("id", ID), ("install", INSTALL)]:
        worker._write(bin_dir / name, text.format(**names))
    (bin_dir / "cp").symlink_to(shutil.which("cp"))
    (worker.root / "etc/systemd/system").mkdir(parents=True)
    return worker


DROPIN = "etc/systemd/system/tassium-agent.service.d/rootless-docker.conf"


@pytest.fixture
def rootless_script(make_app):
    with files_server.serving(files_server.files({})) as url:
        yield script_from(make_app, url, agent_package="tassium[agent]")


def test_a_rootless_install_keeps_the_agent_out_of_the_docker_group(worker, rootless_script):
    result = writing(worker).install(rootless_script, "--docker-host", SOCKET)
    assert result.returncode == 0, result.stderr
    commands = worker.commands()
    assert not [c for c in commands if c.split()[0] in ("usermod", "groupadd", "gpasswd")]
    (useradd,) = [c for c in commands if c.startswith("useradd ")]
    assert "docker" not in useradd
    # Docker is the owner's rootless one: the system's is not installed.
    assert not [c for c in commands if c.startswith("apt-get install")]
    config = (worker.root / "etc/tassium/agent.yaml").read_text()
    assert f'\ndocker_host: "{SOCKET}"\n' in config
    lines = (worker.root / DROPIN).read_text().splitlines()
    assert [line for line in lines if not line.startswith("#")] == [
        "[Service]",
        "SupplementaryGroups=",
        "ProtectHome=read-only",
    ]
    reload = commands.index("systemctl daemon-reload")
    written = [i for i, c in enumerate(commands) if c.startswith("install ") and DROPIN in c]
    assert written and written[0] < reload


def test_without_docker_host_the_system_engine_is_installed_and_grouped(worker, rootless_script):
    # The control of the test above, on the same machine.
    result = writing(worker).install(rootless_script)
    assert result.returncode == 0, result.stderr
    commands = worker.commands()
    assert "useradd" in " ".join(commands) and "--groups docker" in " ".join(commands)
    assert [c for c in commands if c.startswith("apt-get install")][0].endswith(" docker.io")
    assert "docker_host" not in (worker.root / "etc/tassium/agent.yaml").read_text()
    assert not (worker.root / DROPIN).exists()


def test_a_rootless_rerun_takes_the_agent_out_of_the_docker_group(worker, rootless_script):
    writing(worker)
    (worker.root / "in-docker-group").touch()
    result = worker.install(rootless_script, "--docker-host", SOCKET)
    assert result.returncode == 0, result.stderr
    commands = worker.commands()
    assert "gpasswd -d tassium docker" in commands
    assert not [c for c in commands if c.split()[0] in ("usermod", "useradd", "groupadd")]


def test_a_run_without_docker_host_never_leaves_the_docker_group(worker, rootless_script):
    writing(worker)
    (worker.root / "in-docker-group").touch()
    assert worker.install(rootless_script).returncode == 0
    assert not [c for c in worker.commands() if c.startswith("gpasswd")]
    assert "usermod --append --groups docker tassium" in worker.commands()


def test_a_rerun_without_docker_host_removes_the_dropin(worker, rootless_script):
    writing(worker)
    assert worker.install(rootless_script, "--docker-host", SOCKET).returncode == 0
    assert (worker.root / DROPIN).exists()
    result = worker.install(rootless_script)
    assert result.returncode == 0, result.stderr
    assert not (worker.root / DROPIN).exists()
    assert f"==> Removing {worker.root / DROPIN}" in result.stdout
    assert "docker_host" not in (worker.root / "etc/tassium/agent.yaml").read_text()


def test_uninstall_removes_the_dropin(worker, rootless_script):
    writing(worker)
    assert worker.install(rootless_script, "--docker-host", SOCKET).returncode == 0
    result = worker.install(rootless_script, "--uninstall", "--delete-key")
    assert result.returncode == 0, result.stderr
    assert not (worker.root / DROPIN).parent.exists()
