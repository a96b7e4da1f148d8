"""The owner's line, ``curl … | sh``, against a served collector under dash (Debian's sh): a
refusal reaches the owner and fails the line whether curl runs with ``-f`` or not, and the
owners' guide's install lines (docs/owners.md) are ones the default collector serves a script
for."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from collector.install.setup import REFUSED
from protocol.wallets import normalize_wallet
from tests.packaging.installer import installer

OWNERS = Path(__file__).parents[3] / "docs" / "owners.md"
EIP55 = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
STELLAR = "GBRPYHIL2CI3FNQ4BXLFMNDLFJUNPU2HY3ZMFSHONUCEOASW7QC7OX2H"
PREFIX = "tassium setup: error: "
# The owners' guide's and the worker client's ways to pipe the script: with curl -f and without.
CURLS = ("curl -fsSL", "curl -sSL", "curl -s")
# What the refusals below say, by query.
REFUSALS = {
    "wallet=" + EIP55[:-1] + EIP55[-1].swapcase(): "wallet address fails its EIP-55 checksum",
    "wallet=" + STELLAR: "wallet: wallet address must be 0x",
    "wallet=": "wallet is required: /setup.sh?wallet=<your wallet address>",
    f"wallet={EIP55}&colour=red": "unknown parameter 'colour'; accepted: wallet, token",
}


class Shell:
    """The owner's shell: dash, with only curl, sh (dash) and bash on its PATH. Without id or
    sudo a served installer could not become root even when the tests run as root: a line
    given a real script instead of a refusal fails at the prologue, installing nothing."""

    def __init__(self, root: Path):
        self.bin = root / "bin"
        self.bin.mkdir()
        for name, tool in (("curl", "curl"), ("sh", "dash"), ("bash", "bash")):
            found = shutil.which(tool)
            assert found, f"the tests need {tool}"
            (self.bin / name).symlink_to(found)
        self.cwd = root

    def run(self, line: str) -> subprocess.CompletedProcess:
        # No pipefail: the owner's shell has none, so the line's status is its last command's.
        return subprocess.run(
            [shutil.which("dash") or "dash", "-c", line],
            cwd=self.cwd,
            env={"PATH": str(self.bin), "LANG": "C.UTF-8"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def shell(tmp_path) -> Shell:
    return Shell(tmp_path)


def assert_refused(result: subprocess.CompletedProcess, message: str, line: str) -> None:
    assert (result.returncode, result.stdout) == (1, ""), (line, result)
    assert result.stderr.startswith(PREFIX), (line, result.stderr)
    assert result.stderr.count("\n") == 1 and message in result.stderr, (line, result.stderr)


def test_a_4xx_would_pass_the_owners_line_as_a_success(serve_collector, shell):
    # Why refusals are answered 200: what curl -f does with any other status, under dash.
    served = serve_collector()
    result = shell.run(f"curl -fsSL '{served.url}/no-such-page' | sh")
    assert result.returncode == 0
    assert result.stderr == "curl: (22) The requested URL returned error: 404\n"


def test_every_refusal_reaches_the_owner_and_fails_the_line(serve_collector, shell):
    served = serve_collector()
    for query, message in REFUSALS.items():
        for route in ("/setup.sh", "/api/setup"):
            for curl in CURLS:
                for consumer in ("sh", "sh -s -- --no-docker", "bash -s -- --uninstall"):
                    line = f"{curl} '{served.url}{route}?{query}' | {consumer}"
                    assert_refused(shell.run(line), message, line)


def test_a_token_only_collector_refuses_a_line_without_one(serve_collector, shell):
    served = serve_collector(enrollment_policy="token")
    for curl in CURLS:
        line = f"{curl} '{served.url}/setup.sh?wallet={EIP55}' | sh"
        assert_refused(shell.run(line), "this collector enrolls workers with a token", line)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_a_database_that_cannot_answer_reaches_the_owner_and_fails_the_line(
    own_postgres, serve_collector, shell
):
    served = serve_collector(database_url=own_postgres.fresh_database(), processes=1)
    own_postgres.pause()
    try:
        for curl in CURLS:
            line = f"{curl} '{served.url}/setup.sh?wallet={EIP55}' | sh"
            assert_refused(shell.run(line), "the collector's database is unavailable", line)
    finally:
        own_postgres.resume()  # its fixture stops a running server


# --- the owners' guide's install lines -----------------------------------------------------------

LINE = re.compile(
    r"curl (?P<flags>-\S+) '(?P<url>https://collector\.example/[^']*)'"
    r" \| (?:sudo )?(?:sh|bash)(?: -s -- (?P<options>.+))?"
)


def readme_install_lines() -> list[re.Match]:
    """The lines of the first sh block of "Installing a worker" in docs/owners.md."""
    section = OWNERS.read_text().partition("\n## Installing a worker\n")[2].partition("\n## ")[0]
    block = section.partition("```sh\n")[2].partition("```")[0]
    lines = block.splitlines()
    matches = [LINE.fullmatch(line) for line in lines]
    assert lines and all(matches), lines
    return matches


def test_the_readme_install_lines_are_served_a_script_by_the_default_collector(make_app, tmp_path):
    lines = readme_install_lines()
    assert {line["flags"] for line in lines} == {"-fsSL", "-s"}
    # As printed: a default collector, whose public_url is the guide's host.
    client = make_app(public_url="https://collector.example").test_client()
    for line in lines:
        response = client.get(line["url"].removeprefix("https://collector.example"))
        assert (response.status_code, response.headers.get(REFUSED)) == (200, None), line[0]
        script = response.get_data(as_text=True)
        wallet = re.search(r"^WALLET=(\S+)$", script, re.M)[1]
        assert wallet == normalize_wallet(EIP55, "evm"), line[0]
        # The line's options are the script's own, and its values pass their checks.
        options = (line["options"] or "").split()
        functions = installer(script).removesuffix('main "$@"\n')
        checked = subprocess.run(
            ["bash", "-c", functions + 'parse_options "$@"\nvalidate_options\n', "setup.sh"]
            + options,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", ""), line[0]
