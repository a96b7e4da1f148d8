"""agent.keys: the worker's Ed25519 key on disk, and that it never reaches the agent's output."""

import base64
import hashlib
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import keys
from agent.errors import KeyFileError
from protocol.heartbeat import encode_public_key
from tests.conftest import free_port
from tests.factories import new_wallet
from tests.programs import console_script


@pytest.fixture
def key_path(tmp_path) -> Path:
    return tmp_path / "state" / "agent.key"


@pytest.fixture(params=[0o000, 0o022], ids=["umask-000", "umask-022"])
def umask(request):
    """Run the test under this umask (generate must not depend on a strict one)."""
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def write_key_file(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return path


def pem(key, encryption=None) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        encryption or serialization.NoEncryption(),
    )


def raw_public(key) -> bytes:
    return key.public_key().public_bytes_raw()


# --- generate -------------------------------------------------------------------------------


def test_generate_writes_the_key_readable_by_its_owner_only(key_path, umask):
    keys.generate(key_path)

    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700


def test_generate_writes_a_pem_key_that_load_reads_back(key_path):
    generated = keys.generate(key_path)

    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    loaded = keys.load(key_path)
    assert isinstance(loaded, keys.AgentKey)
    assert raw_public(loaded) == raw_public(generated)
    # openssl, cryptography and every Ed25519 library read the same file as the same key.
    theirs = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert raw_public(theirs) == raw_public(generated)


def test_generate_makes_a_new_key_each_time(tmp_path):
    first = keys.generate(tmp_path / "a.key")
    second = keys.generate(tmp_path / "b.key")

    assert raw_public(first) != raw_public(second)


def test_generate_refuses_to_overwrite_an_existing_key(key_path):
    keys.generate(key_path)
    before = key_path.read_bytes()

    with pytest.raises(KeyFileError, match="already exists; remove it first"):
        keys.generate(key_path)

    assert key_path.read_bytes() == before


def test_generate_refuses_to_overwrite_any_existing_file(key_path):
    write_key_file(key_path, b"not mine to replace", mode=0o644)

    with pytest.raises(KeyFileError, match="already exists"):
        keys.generate(key_path)

    assert key_path.read_bytes() == b"not mine to replace"


# --- load -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620, 0o660, 0o700 | 0o007])
def test_load_rejects_a_key_others_can_use(key_path, mode):
    keys.generate(key_path)
    key_path.chmod(mode)

    with pytest.raises(KeyFileError, match=re.escape(f"readable by others: chmod 600 {key_path}")):
        keys.load(key_path)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_load_accepts_a_key_only_its_owner_can_read(key_path, mode):
    generated = keys.generate(key_path)
    key_path.chmod(mode)

    assert raw_public(keys.load(key_path)) == raw_public(generated)


def test_load_of_a_missing_key_says_to_run_keygen(key_path):
    with pytest.raises(
        KeyFileError, match=re.escape(f"no key at {key_path}: run tassium-agent keygen")
    ):
        keys.load(key_path)


def test_load_of_something_that_cannot_be_read_says_so(key_path):
    key_path.mkdir(parents=True, mode=0o700)

    with pytest.raises(KeyFileError, match=f"cannot read the key at {re.escape(str(key_path))}"):
        keys.load(key_path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"garbage, not a key at all\n",
        b"\xff\xfe\x00 binary garbage",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    ],
    ids=["empty", "text", "binary", "broken-pem", "public-key-pem", "der"],
)
def test_load_rejects_a_file_that_holds_no_pem_private_key(key_path, content):
    write_key_file(key_path, content)

    with pytest.raises(KeyFileError, match="does not hold a PEM private key"):
        keys.load(key_path)


@pytest.mark.parametrize(
    "other",
    [ec.generate_private_key(ec.SECP256R1()), ed448.Ed448PrivateKey.generate()],
    ids=["ec-p256", "ed448"],
)
def test_load_rejects_a_pem_key_that_is_not_ed25519(key_path, other):
    write_key_file(key_path, pem(other))

    with pytest.raises(KeyFileError, match="is not an Ed25519 key"):
        keys.load(key_path)


def test_load_rejects_an_encrypted_key_with_an_agent_error(key_path):
    encrypted = pem(Ed25519PrivateKey.generate(), serialization.BestAvailableEncryption(b"pw"))
    write_key_file(key_path, encrypted)

    with pytest.raises(KeyFileError, match="encrypted"):
        keys.load(key_path)


# --- fingerprint ----------------------------------------------------------------------------


def test_the_fingerprint_of_a_key_is_stable(key_path):
    generated = keys.generate(key_path)

    first = keys.fingerprint(generated)

    assert re.fullmatch(r"SHA256:[0-9a-f]{32}", first)
    assert keys.fingerprint(generated) == first
    assert keys.fingerprint(keys.load(key_path)) == first
    assert keys.fingerprint(keys.load(key_path)) == first


def test_different_keys_have_different_fingerprints(tmp_path):
    first, second = keys.generate(tmp_path / "a.key"), keys.generate(tmp_path / "b.key")

    assert keys.fingerprint(first) != keys.fingerprint(second)


def test_the_fingerprint_names_the_public_half_only(key_path):
    generated = keys.generate(key_path)
    digest = hashlib.sha256(raw_public(generated)).hexdigest()
    assert keys.fingerprint(generated) == "SHA256:" + digest[:32]


# --- the private key never reaches the agent's output ----------------------------------------


def secret_spellings(key_path: Path) -> list[str]:
    """Every way the private key could be printed: its PEM text and body, the raw seed."""
    text = key_path.read_text()
    body = "".join(line for line in text.splitlines() if not line.startswith("-----"))
    seed = keys.load(key_path).private_bytes_raw()
    return [
        text.strip(),
        body,
        *(line for line in text.splitlines() if not line.startswith("-----")),
        seed.hex(),
        base64.b64encode(seed).decode(),
        base64.urlsafe_b64encode(seed).decode().rstrip("="),
        repr(seed),
    ]


@pytest.fixture
def agent_config(tmp_path, key_path) -> Path:
    """A YAML configuration for the agent CLI, with the key in a temporary state directory;
    the collector and Docker are unreachable (a refused port, a missing socket)."""
    path = tmp_path / "agent.yaml"
    values = {
        "collector_url": f"http://127.0.0.1:{free_port()}",
        "wallet": new_wallet(),
        "state_dir": str(key_path.parent),
        "docker_host": f"unix://{tmp_path / 'no-docker.sock'}",
        "docker_timeout": 1,
        "connect_timeout": 1,
        "read_timeout": 1,
        "log_level": "DEBUG",
    }
    path.write_text(yaml.safe_dump(values))
    return path


def agent_cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [console_script("tassium-agent"), "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keygen_prints_the_public_key_and_never_the_private_one(agent_config, key_path):
    done = agent_cli(agent_config, "keygen")

    assert done.returncode == 0, done.stderr
    key = keys.load(key_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert f"public key: {encode_public_key(key)}" in done.stdout
    assert f"fingerprint: {keys.fingerprint(key)}" in done.stdout
    printed = done.stdout + done.stderr
    for secret in secret_spellings(key_path):
        assert secret not in printed


def test_keygen_a_second_time_keeps_the_key_and_says_why(agent_config, key_path):
    assert agent_cli(agent_config, "keygen").returncode == 0
    before = key_path.read_bytes()

    done = agent_cli(agent_config, "keygen")

    assert done.returncode != 0
    assert "already exists" in done.stderr
    assert "Traceback" not in done.stderr
    assert key_path.read_bytes() == before


@pytest.mark.parametrize(
    ("command", "shown"),
    [("status", "ok  key"), ("once", '"dockerAvailable":false')],
)
def test_other_commands_never_print_the_private_key(agent_config, key_path, command, shown):
    keys.generate(key_path)

    done = agent_cli(agent_config, command)

    assert "Traceback" not in done.stderr
    assert shown in done.stdout  # the command did its work, with the key loaded
    printed = done.stdout + done.stderr
    for secret in secret_spellings(key_path):
        assert secret not in printed


def test_nothing_the_agent_holds_shows_the_key_in_its_repr(key_path):
    key = keys.generate(key_path)
    secrets = secret_spellings(key_path)

    for shown in (repr(key), str(key), repr(key.public_key()), keys.fingerprint(key)):
        for secret in secrets:
            assert secret not in shown
