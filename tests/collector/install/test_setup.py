"""collector/install/setup.py: the setup script rendered for one wallet (``/setup.sh`` and
``/api/setup``). The values it carries are read back by running its values block in bash;
every refusal is a script too, and nothing a caller sends becomes shell code. What it installs
is pinned by the sha256 of the served wheel and lock, fetched over https unless it stays on
this machine."""

import hashlib
import importlib.metadata
import io
import subprocess
import zipfile
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from collector.addresses import is_loopback
from collector.install import wheel
from collector.install.setup import INSTALLER_END, REFUSED, SCRIPT_PATTERNS, render
from collector.store.models import EnrollmentToken, Worker
from collector.uptime.enrollment import issue_token
from protocol.times import utcnow
from tests.factories import FakeWorker, new_wallet
from tests.packaging.installer import installer

ROOT = Path(__file__).parents[3]
TEMPLATE = (ROOT / "packaging" / "setup.sh").read_text()
AGENT_UNIT = (ROOT / "systemd" / "tassium-agent.service").read_text().removesuffix("\n")
END = "# (end of the values the collector fills in)"
LOCK = (ROOT / "packaging" / "agent-requirements.txt").read_bytes()
PINS = ("WHEEL_URL", "WHEEL_SHA256", "LOCK_URL", "LOCK_SHA256")
NAMES = ("COLLECTOR_URL", "WALLET", "WALLET_FORMAT", "TOKEN", *PINS, "PACKAGE", "AGENT_UNIT")
ROUTES = ["/setup.sh", "/api/setup"]
WHEEL = f"tassium-{importlib.metadata.version('tassium')}-py3-none-any.whl"
EIP55 = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
STELLAR = "GBRPYHIL2CI3FNQ4BXLFMNDLFJUNPU2HY3ZMFSHONUCEOASW7QC7OX2H"
PREFIX = "tassium setup: error: "


def bash(script: str, cwd: Path, shell: str = "bash") -> subprocess.CompletedProcess:
    """Run a script as ``curl … | bash`` (or ``| sh``) would: the shell reading it on stdin."""
    return subprocess.run(
        [shell, "-s"], input=script.encode(), cwd=cwd, capture_output=True, timeout=30
    )


def rendered_values(script: str, cwd: Path, names=NAMES) -> dict[str, str]:
    """What bash sees in the values block: the installer up to its end marker, then each value
    printed NUL-terminated (``set -u`` in the script makes a missing one an error)."""
    head, end, _ = installer(script).partition(END)
    assert end, "the rendered script has no end of its values block"
    printing = "printf '%s\\0' " + " ".join(f'"${name}"' for name in names)
    result = bash(f"{head}{end}\n{printing}\n", cwd)
    assert (result.returncode, result.stderr) == (0, b"")
    printed = result.stdout.decode().split("\0")
    assert printed[-1] == ""
    return dict(zip(names, printed[:-1], strict=True))


def assert_it_passes_its_own_checks(script: str, cwd: Path) -> None:
    """The served script's validate_options, run by bash on the values it carries (main is
    not run): the collector never serves a script that refuses its own values."""
    functions = installer(script).removesuffix('main "$@"\n')
    assert functions != installer(script)
    result = bash(functions + "validate_options\n", cwd)
    assert (result.returncode, result.stderr) == (0, b"")


def expected(url: str, wallet: str, **changes: str) -> dict[str, str]:
    values = {
        "COLLECTOR_URL": url,
        "WALLET": wallet,
        "WALLET_FORMAT": "evm",
        "TOKEN": "",
        "WHEEL_URL": f"{url}/packages/{WHEEL}",
        "WHEEL_SHA256": wheel.current().sha256,
        "LOCK_URL": f"{url}/packages/agent-requirements.txt",
        "LOCK_SHA256": hashlib.sha256(LOCK).hexdigest(),
        "PACKAGE": "",
        "AGENT_UNIT": AGENT_UNIT,
    }
    return values | changes


def setup(client, *pairs: tuple[str, str], route: str = "/setup.sh", **options):
    """GET the setup route with query pairs in order (so a name may repeat)."""
    return client.get(f"{route}?{urlencode(pairs)}" if pairs else route, **options)


def host(value: str) -> dict:
    """Request options that send ``value`` as the Host header, whatever it holds."""
    return {"environ_overrides": {"HTTP_HOST": value}}


def assert_script(response, refused: int | None = None) -> str:
    """A script, as every answer of the route is: 200 even when refused (curl -f would hide
    the body of anything else), the status it stands for in its own header."""
    assert response.status_code == 200
    assert response.mimetype == "text/x-shellscript"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers.get(REFUSED) == (None if refused is None else str(refused))
    return response.get_data(as_text=True)


NO_PUBLIC_URL = "the operator must set public_url (https://...) first"
PLAIN_HTTP = "is plain http, which anyone on the way could change: the operator must make it https"


def assert_refusal(response, message: str, cwd: Path, status: int = 400) -> None:
    """A refusal standing for ``status`` whose body, run by bash and by sh (dash), says why
    on stderr and exits 1."""
    body = assert_script(response, refused=status)
    assert body.startswith("#!/bin/sh\n") and len(body) < 1000
    said = set()
    for shell in ("bash", "dash"):
        result = bash(body, cwd, shell)
        stderr = result.stderr.decode()
        assert (result.returncode, result.stdout) == (1, b""), shell
        assert stderr.startswith(PREFIX) and stderr.count("\n") == 1, (shell, stderr)
        assert message in stderr
        said.add(stderr)
    assert len(said) == 1, said


def token_for(wallet: str, issued: timedelta = timedelta(0)) -> str:
    """A token for the wallet, valid for an hour from ``issued`` ago."""
    return issue_token(wallet, timedelta(hours=1), utcnow() - issued)


# --- what the script carries ----------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_the_script_carries_the_wallet_and_the_address_it_was_fetched_from(client, route, tmp_path):
    wallet = new_wallet()
    body = assert_script(setup(client, ("wallet", wallet), route=route))
    assert rendered_values(body, tmp_path) == expected("http://localhost", wallet)


@pytest.mark.parametrize(
    "given",
    [EIP55, EIP55.lower(), "0x" + EIP55[2:].upper()],
    ids=["eip55", "lower", "upper"],
)
def test_the_wallet_is_written_in_its_normalized_form(client, given, tmp_path):
    body = assert_script(setup(client, ("wallet", given)))
    assert rendered_values(body, tmp_path)["WALLET"] == EIP55.lower()


def test_only_the_values_block_differs_from_the_template(client):
    body = assert_script(setup(client, ("wallet", new_wallet())))
    head, _, tail = body.partition(END)
    template_head, _, template_tail = TEMPLATE.partition(END)
    assert tail == template_tail
    assert head.split("\nCOLLECTOR_URL=")[0] == template_head.split("\nCOLLECTOR_URL=")[0]
    assert head.count("\n") == template_head.count("\n") + AGENT_UNIT.count("\n")


@pytest.mark.parametrize(
    "settings, url",
    [
        ({"public_url": "https://tassium.example.com"}, "https://tassium.example.com"),
        ({"public_url": "https://tassium.example.com/"}, "https://tassium.example.com"),
        (
            {"public_url": "http://10.0.0.5:8000/collector/", "insecure_http_installs": True},
            "http://10.0.0.5:8000/collector",
        ),
    ],
)
def test_a_configured_public_url_is_used_whatever_the_host_header(
    make_app, settings, url, tmp_path
):
    client = make_app(**settings).test_client()
    wallet = new_wallet()
    response = setup(client, ("wallet", wallet), **host("$(evil)"))
    assert rendered_values(assert_script(response), tmp_path) == expected(url, wallet)


@pytest.mark.parametrize(
    "options, url",
    [
        (host("localhost:8443"), "http://localhost:8443"),
        (host("127.0.0.1"), "http://127.0.0.1"),
        (host("127.8.9.10:8000"), "http://127.8.9.10:8000"),
        (host("[::1]:8000"), "http://[::1]:8000"),
        (host("localhost:80"), "http://localhost"),
        ({"base_url": "https://127.0.0.1"}, "https://127.0.0.1"),
    ],
    ids=["name-and-port", "ipv4", "ipv4-loopback-net", "ipv6", "default-port", "https"],
)
def test_without_a_public_url_a_loopback_request_address_is_used(client, options, url, tmp_path):
    body = assert_script(setup(client, ("wallet", EIP55), **options))
    assert rendered_values(body, tmp_path)["COLLECTOR_URL"] == url
    assert rendered_values(body, tmp_path)["WHEEL_URL"] == f"{url}/packages/{WHEEL}"


@pytest.mark.parametrize(
    "options",
    [
        host("collector.example:8443"),
        host("10.1.2.3"),
        host("[::ffff:10.0.0.1]"),
        host("0.0.0.0:8000"),
        host("127.0.0.1.nip.io"),
        host("localhost.example"),
        {"base_url": "https://collector.example"},
    ],
    ids=["name", "ipv4", "ipv6", "any", "loopback-lookalike", "localhost-lookalike", "https"],
)
@pytest.mark.parametrize("route", ROUTES)
def test_without_a_public_url_any_other_request_address_is_refused(
    client, options, route, tmp_path
):
    # Whoever sends the Host header would choose where the worker fetches its agent from.
    response = setup(client, ("wallet", EIP55), route=route, **options)
    assert_refusal(response, NO_PUBLIC_URL, tmp_path)


@pytest.mark.parametrize(
    "public_url",
    ["http://tassium.example.com", "http://10.0.0.5:8000/collector", "http://[::ffff:a00:5]"],
)
def test_a_plain_http_public_url_is_refused_unless_the_operator_allows_it(
    make_app, public_url, tmp_path
):
    refused = setup(make_app(public_url=public_url).test_client(), ("wallet", EIP55))
    assert_refusal(refused, f"public_url {public_url} {PLAIN_HTTP}", tmp_path)

    allowed = make_app(public_url=public_url, insecure_http_installs=True).test_client()
    body = assert_script(setup(allowed, ("wallet", EIP55)))
    assert rendered_values(body, tmp_path)["WHEEL_URL"] == f"{public_url}/packages/{WHEEL}"


@pytest.mark.parametrize(
    "public_url",
    ["http://127.0.0.1:8000", "http://127.255.0.1", "http://localhost:8000/c", "http://[::1]"],
)
def test_a_plain_http_public_url_on_loopback_needs_no_setting(make_app, public_url, tmp_path):
    # The collector and a worker on one machine (docs/owners.md, "Installing a worker").
    client = make_app(public_url=public_url).test_client()
    body = assert_script(setup(client, ("wallet", EIP55)))
    assert rendered_values(body, tmp_path)["WHEEL_URL"] == f"{public_url}/packages/{WHEEL}"


@pytest.mark.parametrize(
    "address, loopback",
    [
        ("localhost", True),
        ("LocalHost", True),
        ("127.0.0.1", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("[::1]", True),
        ("[0:0:0:0:0:0:0:1]", True),
        ("::ffff:127.0.0.1", True),
        ("[::ffff:127.0.0.2]", True),
        ("128.0.0.1", False),
        ("10.0.0.1", False),
        ("0.0.0.0", False),  # noqa: S104 - an address to judge, not to bind
        ("::", False),
        ("[::ffff:10.0.0.1]", False),
        ("[::1", False),
        ("localhost.example", False),
        ("my-localhost", False),
        ("127.0.0.1.nip.io", False),
        ("", False),
    ],
)
def test_what_counts_as_loopback(address, loopback):
    assert is_loopback(address) is loopback


@pytest.mark.parametrize(
    "value, accepted",
    [
        ("localhost:8443", True),
        ("127.0.0.1", True),
        ("[::1]:8000", True),
        ("[::ffff:127.0.0.1]", True),
        ("localhost:65535", True),
        ("a:b:c", False),
        ("localhost:0", False),
        ("localhost:080", False),
        ("localhost:65536", False),
        ("-a.example", False),
        ("a-.example", False),
        ("a_b", False),
        ("[::1", False),
        ("user@localhost", False),
    ],
)
def test_a_host_header_is_used_only_when_the_script_accepts_the_url_made_from_it(
    client, value, accepted, tmp_path
):
    response = setup(client, ("wallet", EIP55), **host(value))
    if accepted:
        body = assert_script(response)
        assert rendered_values(body, tmp_path)["COLLECTOR_URL"] == f"http://{value}"
        assert_it_passes_its_own_checks(body, tmp_path)
    else:
        refused = "the Host header is not a plain host name; set public_url"
        assert_refusal(response, refused, tmp_path)


@pytest.mark.parametrize(
    "settings",
    [
        {"public_url": "https://tassium.example.com/"},
        {"public_url": "http://[::1]:65535/collector"},
        {
            "public_url": "http://10.0.0.5:8000",
            "insecure_http_installs": True,
            "agent_package": "tassium[agent]>=0.1,<1",
        },
        {"agent_package": "https://files.example/tassium-0.1.0-py3-none-any.whl"},
        {"wallet_format": "stellar"},
    ],
)
def test_every_script_served_passes_its_own_checks(make_app, dbconn, settings, tmp_path):
    client = make_app(enrollment_policy="token", **settings).test_client()
    address = STELLAR if settings.get("wallet_format") == "stellar" else new_wallet()
    pairs = [("wallet", address), ("token", token_for(address))]
    assert_it_passes_its_own_checks(assert_script(setup(client, *pairs)), tmp_path)


def test_the_served_script_carries_the_collectors_own_patterns(client, tmp_path):
    body = assert_script(setup(client, ("wallet", EIP55)))
    assert rendered_values(body, tmp_path, tuple(SCRIPT_PATTERNS)) == SCRIPT_PATTERNS


def test_a_configured_agent_package_replaces_the_wheel(make_app, tmp_path):
    package = "tassium[agent]==0.1.0"
    client = make_app(agent_package=package).test_client()
    wallet = new_wallet()
    body = assert_script(setup(client, ("wallet", wallet)))
    assert rendered_values(body, tmp_path) == expected(
        "http://localhost", wallet, **dict.fromkeys(PINS, ""), PACKAGE=package
    )


def test_a_stellar_collector_writes_a_stellar_wallet(make_app, tmp_path):
    client = make_app(wallet_format="stellar").test_client()
    body = assert_script(setup(client, ("wallet", STELLAR)))
    assert rendered_values(body, tmp_path) == expected(
        "http://localhost", STELLAR, WALLET_FORMAT="stellar"
    )
    assert_refusal(setup(client, ("wallet", EIP55)), "wallet: wallet address must be", tmp_path)


def test_the_whole_rendered_script_is_valid_bash(client, dbconn, tmp_path):
    wallet = new_wallet()
    body = assert_script(setup(client, ("wallet", wallet), ("token", token_for(wallet))))
    script = tmp_path / "setup.sh"
    script.write_text(body)
    for shell in ("dash", "bash"):
        result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
        assert (result.returncode, result.stderr) == (0, "")
    # The installer, which neither parses in the here-document:
    result = subprocess.run(["bash", "-n"], input=installer(body), capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize(
    "value",
    [INSTALLER_END, f"x\n{INSTALLER_END}", f"x\n{INSTALLER_END}\ny"],
    ids=["alone", "last-line", "middle-line"],
)
def test_no_value_can_end_the_installer_early(value):
    # Every value is validated before it gets here; this is the last line of defence.
    with pytest.raises(ValueError, match="would end the installer"):
        render(TEMPLATE, {"AGENT_UNIT": value})
    # Not a line of its own, it is only text.
    assert f"{INSTALLER_END}x" in render(TEMPLATE, {"AGENT_UNIT": f"{INSTALLER_END}x"})


# --- tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_a_usable_token_is_written_and_not_used_up(make_app, dbconn, route, tmp_path):
    client = make_app(enrollment_policy="token").test_client()
    worker = FakeWorker()
    token = token_for(worker.wallet)
    body = assert_script(setup(client, ("wallet", worker.wallet), ("token", token), route=route))
    assert rendered_values(body, tmp_path) == expected(
        "http://localhost", worker.wallet, TOKEN=token
    )
    assert EnrollmentToken.get(EnrollmentToken.wallet_address == worker.wallet).used_at is None
    assert worker.enroll(client, token).status_code == 201


def _used_by_another_key(wallet: str, client) -> str:
    token = token_for(wallet)
    assert FakeWorker(wallet).enroll(client, token).status_code == 201
    # Unenrolled again (its key was lost, say): now the used token cannot enroll it.
    Worker.update(public_key=None).where(Worker.wallet_address == wallet).execute()
    return token


UNUSABLE = {
    "unknown": lambda wallet, client: "tsk_" + "x" * 43,
    "expired": lambda wallet, client: token_for(wallet, issued=timedelta(hours=2)),
    "used": _used_by_another_key,
    "other-wallet": lambda wallet, client: token_for(new_wallet()),
}


@pytest.mark.parametrize("problem", sorted(UNUSABLE))
def test_an_unusable_token_is_refused(client, dbconn, problem, tmp_path):
    wallet = new_wallet()
    token = UNUSABLE[problem](wallet, client)
    assert_refusal(
        setup(client, ("wallet", wallet), ("token", token)),
        "token is unknown, expired, used or for another wallet",
        tmp_path,
    )


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        "tsk_" + "A" * 42,
        "tsk_" + "A" * 44,
        "TSK_" + "A" * 43,
        "tsk_" + "A" * 42 + "=",
    ],
)
def test_a_malformed_token_is_refused(client, token, tmp_path):
    assert_refusal(
        setup(client, ("wallet", new_wallet()), ("token", token)),
        "token must be an enrollment token as issued",
        tmp_path,
    )


@pytest.mark.parametrize("pairs", [(), (("token", ""),)], ids=["absent", "empty"])
def test_the_token_policy_needs_a_token(make_app, pairs, tmp_path):
    client = make_app(enrollment_policy="token").test_client()
    assert_refusal(
        setup(client, ("wallet", new_wallet()), *pairs),
        "this collector enrolls workers with a token",
        tmp_path,
    )


@pytest.mark.parametrize("with_token", [True, False], ids=["same-line", "no-token"])
def test_an_enrolled_worker_gets_its_line_again_to_upgrade(make_app, dbconn, with_token, tmp_path):
    client = make_app(enrollment_policy="token").test_client()
    worker = FakeWorker()
    token = token_for(worker.wallet)
    assert worker.enroll(client, token).status_code == 201
    pairs = [("wallet", worker.wallet)] + ([("token", token)] if with_token else [])
    body = assert_script(setup(client, *pairs))
    values = rendered_values(body, tmp_path)
    assert values["TOKEN"] == (token if with_token else "")
    # The used token still enrolls nothing new, but the same key is welcome back.
    assert worker.enroll(client, token).status_code == 200


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pairs, message",
    [
        pytest.param((), "wallet is required: /setup.sh?wallet=", id="no-wallet"),
        pytest.param((("wallet", ""),), "wallet is required", id="empty-wallet"),
        pytest.param((("wallet", "0x123"),), "wallet: wallet address must be 0x", id="short"),
        pytest.param(
            (("wallet", EIP55[:-1] + EIP55[-1].swapcase()),), "EIP-55 checksum", id="checksum"
        ),
        pytest.param((("wallet", STELLAR),), "wallet: wallet address must be 0x", id="stellar"),
        pytest.param(
            (("wallet", EIP55), ("colour", "red")),
            "unknown parameter 'colour'; accepted: wallet, token",
            id="unknown-parameter",
        ),
        pytest.param(
            (("wallet", EIP55), ("wallet", EIP55)), "wallet is given more than once", id="twice"
        ),
        pytest.param(
            (("wallet", EIP55), ("token", "a"), ("token", "b")),
            "token is given more than once",
            id="token-twice",
        ),
    ],
)
@pytest.mark.parametrize("route", ROUTES)
def test_a_bad_request_is_refused_by_a_script_that_says_why(
    client, route, pairs, message, tmp_path
):
    assert_refusal(setup(client, *pairs, route=route), message, tmp_path)


@pytest.mark.parametrize("route", ROUTES)
def test_a_database_that_cannot_answer_is_a_refusal_that_says_so(make_app, route, tmp_path):
    # SQLite's "unable to open database file": the directory is gone. Answered as JSON, a 503
    # would reach the owner's `| sh` as nothing (curl -f) or as a command not found.
    client = make_app(database_url=f"sqlite:///{tmp_path / 'gone' / 'c.db'}").test_client()
    response = setup(client, ("wallet", EIP55), route=route)
    said = "the collector's database is unavailable: run this line again in a minute"
    assert_refusal(response, said, tmp_path, status=503)
    assert response.headers["Retry-After"] == "10"


def test_a_failure_of_the_collectors_own_is_a_refusal_and_logged(
    client, monkeypatch, caplog, tmp_path
):
    def broken():
        raise RuntimeError("no wheel today")

    monkeypatch.setattr(wheel, "current", broken)
    said = "the collector could not make the install script (its log says why): tell its operator"
    assert_refusal(setup(client, ("wallet", EIP55)), said, tmp_path, status=500)
    [logged] = [r for r in caplog.records if r.exc_info]
    assert logged.getMessage() == "Exception on /setup.sh [GET]"
    assert str(logged.exc_info[1]) == "no wheel today"


# --- injection ------------------------------------------------------------------------------

PAYLOADS = {
    "command-substitution": "$(touch MARKER)",
    "backticks": "`touch MARKER`",
    "single-quotes": "'; touch MARKER; '",
    "double-quote": '"; touch MARKER; "',
    "newline": "x\ntouch MARKER",  # sent as %0A
    "carriage-return": "x\r\ntouch MARKER",
    "percent-0a": "x%0atouch MARKER",  # the literal text, sent as %250a
    "and": "x && touch MARKER",
    "pipe": "x | touch MARKER",
    "semicolon": "x; touch MARKER",
    "variable": "${IFS}touch${IFS}MARKER",
    "unicode": "ü\u2028$(touch MARKER)\u202e",
    "nul": "x\x00$(touch MARKER)",
    "wallet-then-command": EIP55 + "$(touch MARKER)",
}
# Where a payload goes, and what the refusal says.
PLACES = {
    "wallet": "wallet: wallet address must be 0x",
    "token": "token must be an enrollment token",
    "extra-name": "unknown parameter",
    "extra-value": "unknown parameter 'x'",
    "host": "the Host header is not a plain host name",
}


def injected(client, place: str, payload: str):
    pairs = {
        "wallet": [("wallet", payload)],
        "token": [("wallet", EIP55), ("token", payload)],
        "extra-name": [("wallet", EIP55), (payload, "1")],
        "extra-value": [("wallet", EIP55), ("x", payload)],
        "host": [("wallet", EIP55)],
    }[place]
    return setup(client, *pairs, **(host(payload) if place == "host" else {}))


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
@pytest.mark.parametrize("place", PLACES)
def test_nothing_a_caller_sends_becomes_shell_code(client, place, payload, tmp_path):
    assert_refusal(injected(client, place, payload), PLACES[place], tmp_path)
    assert not (tmp_path / "MARKER").exists()


# --- no side effects ------------------------------------------------------------------------


def snapshot() -> tuple:
    return (
        Worker.select().count(),
        sorted((t.token_hash, t.used_at) for t in EnrollmentToken.select()),
    )


def test_fetching_the_script_writes_nothing(client, dbconn):
    enrolled = FakeWorker()
    assert enrolled.enroll(client).status_code == 201
    stranger = new_wallet()
    token = token_for(stranger)
    before = snapshot()
    assert before[0] == 1 and len(before[1]) == 1
    for route in ROUTES:
        for pairs in (
            [("wallet", stranger)],
            [("wallet", stranger), ("token", token)],
            [("wallet", enrolled.wallet), ("token", token)],  # refused: another wallet's
            [("wallet", enrolled.wallet)],
            [("wallet", "0x123")],
        ):
            assert setup(client, *pairs, route=route).status_code == 200
    assert snapshot() == before
    assert Worker.get_or_none(Worker.wallet_address == stranger) is None


# --- over real HTTP -------------------------------------------------------------------------


def test_the_served_script_points_at_the_server_and_its_wheel(serve_collector, tmp_path):
    served = serve_collector()
    wallet = new_wallet()
    response = httpx.get(f"{served.url}/setup.sh", params={"wallet": wallet}, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/x-shellscript")
    values = rendered_values(response.text, tmp_path)
    assert values == expected(served.url, wallet)

    download = httpx.get(values["WHEEL_URL"], timeout=30)
    assert download.status_code == 200
    # The script pins the very bytes the server hands out.
    assert hashlib.sha256(download.content).hexdigest() == values["WHEEL_SHA256"]
    assert download.headers["etag"] == f'"{values["WHEEL_SHA256"]}"'
    lock = httpx.get(values["LOCK_URL"], timeout=30)
    assert lock.status_code == 200
    assert lock.content == LOCK
    assert hashlib.sha256(lock.content).hexdigest() == values["LOCK_SHA256"]
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        assert archive.testzip() is None
        assert "agent/cli.py" in archive.namelist()
        metadata = archive.read(f"{WHEEL.split('-py3')[0]}.dist-info/METADATA").decode()
    assert "\nName: tassium\n" in metadata
