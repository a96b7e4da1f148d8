"""collector/identity/collector_key.py: the collector's receipt key, made 0600 on first start or
given in the configuration, recorded once however many processes start with it, published at
/.well-known/tassium-collector.json with its validity, and rotated without losing earlier
keys; the private key in no log line, error or answer."""

import base64
import logging
import os
import stat
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.signing import VerifyKey

from collector.app import create_app
from collector.config import ConfigError, load_config
from collector.identity import collector_key
from collector.identity.collector_key import (
    EXTENSION,
    WELL_KNOWN_PATH,
    CollectorKey,
    CollectorKeyError,
    key_id_of,
)
from collector.identity.signatures import verify
from collector.store.models import CollectorKeyRecord
from protocol import ProtocolError, private_files
from protocol.times import parse_timestamp, utcnow
from tests.factories import at_once, connected

MESSAGE = b'{"receipt":"an hour of uptime"}'


def key_file(config) -> Path:
    return Path(config.receipt_key_file)


def secret_texts(key: CollectorKey) -> list[str]:
    """Every spelling of the private key a leak could take."""
    seed = key._secret[:32]
    return [
        base64.b64encode(seed).decode(),
        base64.b64encode(key._secret).decode(),
        seed.hex(),
        key.pem().decode().splitlines()[1],
    ]


def assert_verifies(public_key: str, signature: str, message: bytes = MESSAGE) -> None:
    verify(public_key, message, signature)  # the collector's own check
    VerifyKey(base64.b64decode(public_key)).verify(message, base64.b64decode(signature))


def rows() -> list[tuple]:
    return [
        (k.key_id, k.public_key, k.valid_until is None)
        for k in CollectorKeyRecord.select().order_by(CollectorKeyRecord.valid_from)
    ]


# --- the key ---------------------------------------------------------------------------------


def test_a_key_signs_what_its_public_key_verifies_and_its_id_derives_from_that_key():
    key = CollectorKey.generate()
    raw = base64.b64decode(key.public_key, validate=True)

    assert len(raw) == 32 and key.key_id == key_id_of(raw) and len(key.key_id) == 16
    assert_verifies(key.public_key, key.sign(MESSAGE))
    with pytest.raises(ProtocolError):
        verify(key.public_key, MESSAGE + b" ", key.sign(MESSAGE))
    assert repr(key) == f"<CollectorKey {key.key_id}>"


def test_a_key_reads_back_from_its_file_and_from_openssls(tmp_path):
    key = CollectorKey.generate()
    assert CollectorKey.from_pem(key.pem(), tmp_path).key_id == key.key_id
    # What `openssl genpkey -algorithm ed25519` writes: PKCS#8 PEM, as the key file holds.
    other = Ed25519PrivateKey.generate()
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    raw = other.public_key().public_bytes_raw()
    assert CollectorKey.from_pem(pem, tmp_path).public_key == base64.b64encode(raw).decode()


# --- where it is kept --------------------------------------------------------------------------


def test_the_first_start_makes_the_key_file_0600_and_later_starts_reuse_it(config, make_app):
    path = key_file(config)
    assert not path.exists()

    first = make_app().extensions[EXTENSION]

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no leftovers
    again = make_app().extensions[EXTENSION]
    assert again.key_id == first.key_id
    assert_verifies(first.public_key, again.sign(MESSAGE))


def test_a_missing_directory_is_made_0700(config, tmp_path):
    path = tmp_path / "state" / "receipt-signing.key"
    create_app(replace(config, receipt_key_file=str(path)))

    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_key_file_others_may_read_is_refused_with_one_line(config, mode):
    path = key_file(config)
    key = CollectorKey.generate()
    path.write_bytes(key.pem())
    path.chmod(mode)

    with pytest.raises(CollectorKeyError) as refused:
        create_app(config)

    assert str(refused.value) == f"the receipt key {path} is readable by others: chmod 600 {path}"
    assert path.read_bytes() == key.pem()  # left as it was


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a key at all\n",
        CollectorKey.generate().pem()[:60],
        # An encrypted key: the collector starts unattended, with no one to type a password.
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"a password"),
        ),
    ],
    ids=["empty", "text", "truncated", "encrypted"],
)
def test_a_malformed_key_file_is_refused_with_one_line(config, content):
    path = key_file(config)
    path.write_bytes(content)
    path.chmod(0o600)

    with pytest.raises(CollectorKeyError) as refused:
        create_app(config)

    assert str(refused.value) == (
        f"{path} does not hold an unencrypted Ed25519 private key in PEM (PKCS#8)"
    )
    assert path.read_bytes() == content


def test_serve_refuses_a_bad_key_file_with_its_sentence(config, runner):
    path = key_file(config)
    path.write_bytes(b"garbage")
    path.chmod(0o600)

    result = runner("serve")

    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {path} does not hold an unencrypted Ed25519 private key in PEM (PKCS#8)\n"
    )


def test_an_unwritable_place_for_the_key_is_one_sentence(config, tmp_path, monkeypatch):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    path = blocked / "receipt-signing.key"  # under a file: not even readable
    with pytest.raises(CollectorKeyError) as refused:
        create_app(replace(config, receipt_key_file=str(path)))
    assert str(refused.value) == f"cannot read the receipt key at {path}: Not a directory"

    # The tests run as root, whom no mode stops: the refusal a service user would meet.
    def denied(path, data):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(private_files, "create", denied)
    path = key_file(config)
    with pytest.raises(CollectorKeyError) as refused:
        create_app(config)
    assert str(refused.value) == (
        f"cannot create the receipt key at {path}: Permission denied (receipt_key_file names"
        " where it is kept)"
    )


def test_a_key_given_in_the_configuration_is_used_and_no_file_is_made(config):
    seed = os.urandom(32)
    inline = replace(config, receipt_key=base64.b64encode(seed).decode())

    key = create_app(inline).extensions[EXTENSION]

    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    assert key.public_key == base64.b64encode(public).decode()
    assert not key_file(config).exists()
    assert_verifies(key.public_key, key.sign(MESSAGE))
    with connected(config.database_url):
        assert rows() == [(key.key_id, key.public_key, True)]


def test_the_configuration_checks_an_inline_key_and_never_shows_it(tmp_path):
    secret = base64.b64encode(os.urandom(32)).decode()
    config = load_config(None, {"TASSIUM_RECEIPT_KEY": secret})
    assert config.receipt_key == secret and secret not in repr(config)

    for wrong in ("short", base64.b64encode(os.urandom(31)).decode(), secret + "!"):
        with pytest.raises(ConfigError) as refused:
            load_config(None, {"TASSIUM_RECEIPT_KEY": wrong})
        assert wrong not in str(refused.value)
        assert "TASSIUM_RECEIPT_KEY: must be the base64 of 32 random bytes" in str(refused.value)

    with pytest.raises(ConfigError, match="TASSIUM_RECEIPT_KEY_FILE: must be an absolute path"):
        load_config(None, {"TASSIUM_RECEIPT_KEY_FILE": "relative/key"})
    with pytest.raises(ConfigError, match="keep either receipt_key or receipt_key_file"):
        load_config(
            None,
            {"TASSIUM_RECEIPT_KEY": secret, "TASSIUM_RECEIPT_KEY_FILE": str(tmp_path / "k")},
        )


def test_a_configuration_file_holding_the_key_must_be_0600(tmp_path):
    path = tmp_path / "collector.yaml"
    path.write_text(f"receipt_key: {base64.b64encode(os.urandom(32)).decode()}\n")
    path.chmod(0o644)

    with pytest.raises(ConfigError, match="holds a secret but is readable by others"):
        load_config(path, {})


# --- the history and the well-known document ------------------------------------------------


def test_the_well_known_document_lists_the_key_with_its_validity(app, client):
    key = app.extensions[EXTENSION]
    before = utcnow()

    answer = client.get(WELL_KNOWN_PATH)

    assert answer.status_code == 200 and "Authorization" not in answer.request.headers
    document = answer.get_json()
    assert document["current"] == key.key_id
    [published] = document["keys"]
    assert published["keyId"] == key.key_id and published["publicKey"] == key.public_key
    assert published["validUntil"] is None
    assert parse_timestamp(published["validFrom"]) <= before
    assert set(published) == {"keyId", "publicKey", "validFrom", "validUntil"}
    assert_verifies(published["publicKey"], key.sign(MESSAGE))
    for secret in secret_texts(key):
        assert secret not in answer.get_data(as_text=True)


def test_a_key_not_recorded_at_start_is_recorded_when_the_document_is_asked(app, client, dbconn):
    key = app.extensions[EXTENSION]
    CollectorKeyRecord.delete().execute()  # as if the database had been down at the start

    document = client.get(WELL_KNOWN_PATH).get_json()

    assert [k["keyId"] for k in document["keys"]] == [key.key_id]
    assert document["current"] == key.key_id


def test_a_start_without_the_table_logs_and_still_starts(config, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    unmigrated = replace(config, database_url=f"sqlite:///{tmp_path / 'empty.db'}")

    key = create_app(unmigrated).extensions[EXTENSION]

    assert f"the receipt key {key.key_id} is not recorded yet" in caplog.text
    for secret in secret_texts(key):
        assert secret not in caplog.text


def test_apps_sharing_one_key_file_record_one_row(config, make_app, dbconn):
    first = make_app().extensions[EXTENSION]
    second = make_app().extensions[EXTENSION]

    assert first.key_id == second.key_id
    assert rows() == [(first.key_id, first.public_key, True)]


def _start_in_another_process(url, barrier, results, key_path) -> None:
    """Start an app on the shared key file, which does not exist yet, with the others."""
    try:
        from collector.config import CollectorConfig

        config = CollectorConfig(database_url=url, sweep_interval=0, receipt_key_file=key_path)
        barrier.wait(timeout=60)
        app = create_app(config)
        results.put(("ok", app.extensions[EXTENSION].key_id))
    except Exception as exc:  # reported to the test instead of lost in the child's stderr
        results.put(("error", repr(exc)))


def test_processes_starting_at_once_make_one_key_and_record_it_once(config, tmp_path):
    path = tmp_path / "shared" / "receipt-signing.key"  # as on a file system the nodes share

    outcomes = at_once(
        partial(_start_in_another_process, key_path=str(path)), config.database_url, 4
    )

    assert {status for status, _ in outcomes} == {"ok"}, outcomes
    [key_id] = {key_id for _, key_id in outcomes}
    key = collector_key.read_key_file(path)
    assert key.key_id == key_id
    with connected(config.database_url):
        assert rows() == [(key_id, key.public_key, True)]
    assert list(path.parent.iterdir()) == [path]  # no temporary file left


# --- rotation ----------------------------------------------------------------------------------


def test_rotation_signs_with_a_new_key_and_keeps_the_old_one_published(
    config, make_app, runner, dbconn
):
    path = key_file(config)
    old = make_app().extensions[EXTENSION]
    old_signature = old.sign(MESSAGE)

    result = runner("receipts-key", "rotate", receipt_key_file=str(path))

    assert result.exit_code == 0, result.output
    new = collector_key.read_key_file(path)
    kept = path.with_name(f"{path.name}.{old.key_id}.old")
    assert result.output.splitlines() == [
        f"Retired the key {old.key_id}: it stays published for the receipts it signed.",
        f"The collector now signs with the key {new.key_id}.",
        f"The old key file is kept as {kept}.",
        f"Copy {path} to every other node of this collector and restart them: until then "
        "they sign with the retired key.",
    ]
    assert new.key_id != old.key_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert collector_key.read_key_file(kept).key_id == old.key_id
    for secret in secret_texts(old) + secret_texts(new):
        assert secret not in result.output

    app = make_app()
    assert app.extensions[EXTENSION].key_id == new.key_id
    document = app.test_client().get(WELL_KNOWN_PATH).get_json()
    assert document["current"] == new.key_id
    retired, current = document["keys"]
    assert retired["keyId"] == old.key_id and current["keyId"] == new.key_id
    assert retired["validUntil"] == current["validFrom"]
    assert current["validUntil"] is None
    # Receipts signed before stay valid under the key published for their time; new ones
    # are the new key's.
    assert_verifies(retired["publicKey"], old_signature)
    assert_verifies(current["publicKey"], app.extensions[EXTENSION].sign(MESSAGE))
    with pytest.raises(ProtocolError):
        verify(retired["publicKey"], MESSAGE, app.extensions[EXTENSION].sign(MESSAGE))

    # A second rotation retires the second key and keeps every earlier one.
    assert runner("receipts-key", "rotate").exit_code == 0
    document = app.test_client().get(WELL_KNOWN_PATH).get_json()
    assert [k["validUntil"] is None for k in document["keys"]] == [False, False, True]
    assert document["keys"][0]["keyId"] == old.key_id


def test_rotation_refuses_a_key_given_in_the_configuration(config, runner):
    inline = base64.b64encode(os.urandom(32)).decode()

    result = runner("receipts-key", "rotate", receipt_key=inline, receipt_key_file=None)

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: the receipt key is given in the configuration (receipt_key): to rotate it, put a"
        " new one there on every node (openssl rand -base64 32) and restart them, then retire"
        " the old one with tassium-collector receipts-key retire KEY_ID\n"
    )
    assert inline not in result.output
    with connected(config.database_url):
        assert rows() == []


def test_rotation_without_a_key_file_says_the_collector_makes_one(config, runner):
    result = runner("receipts-key", "rotate")

    assert result.exit_code == 1
    assert "there is no receipt key at" in result.stderr
    assert not key_file(config).exists()


def test_an_old_inline_key_is_retired_by_its_id(config, make_app, runner):
    first, second = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
    old = make_app(receipt_key=first).extensions[EXTENSION]
    new = make_app(receipt_key=second).extensions[EXTENSION]
    inline = {"receipt_key": second, "receipt_key_file": None}

    refused = runner("receipts-key", "retire", new.key_id, **inline)
    assert refused.exit_code == 1
    assert f"{new.key_id} is the key receipt_key holds" in refused.stderr

    retired = runner("receipts-key", "retire", old.key_id, **inline)
    assert retired.exit_code == 0
    assert retired.output == (
        f"Retired the key {old.key_id}: it stays published for the receipts it signed.\n"
    )
    assert runner("receipts-key", "retire", old.key_id, **inline).output == (
        f"The key {old.key_id} was retired already.\n"
    )
    with connected(config.database_url):
        assert rows() == [
            (old.key_id, old.public_key, False),
            (new.key_id, new.public_key, True),
        ]


def test_show_lists_the_keys_and_the_one_this_configuration_signs_with(config, make_app, runner):
    key = make_app().extensions[EXTENSION]

    result = runner("receipts-key", "show")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["KEY", "ID", "PUBLIC", "KEY", "VALID", "FROM", "VALID", "UNTIL"]
    assert lines[1].split()[:2] == [key.key_id, key.public_key]
    assert lines[1].split()[3] == "-"
    assert lines[2] == (
        f"This configuration signs with the key {key.key_id} ({config.receipt_key_file})."
    )


def test_a_node_started_with_a_retired_key_says_so(config, make_app, runner, caplog):
    path = key_file(config)
    old = make_app().extensions[EXTENSION]
    runner("receipts-key", "rotate")
    kept = path.with_name(f"{path.name}.{old.key_id}.old")
    caplog.set_level(logging.WARNING)

    make_app(receipt_key_file=str(kept))

    assert f"signs receipts with the key {old.key_id}, retired at" in caplog.text


def test_records_written_by_a_rotation_hold_together(config, make_app, runner):
    make_app()
    runner("receipts-key", "rotate")
    with connected(config.database_url):
        keys = collector_key.history()
    assert [k.valid_until is None for k in keys] == [False, True]
    assert keys[0].valid_until == keys[1].valid_from
