"""agent.config.load_config: the YAML file, TASSIUM_* overrides, and every problem at once."""

from pathlib import Path

import pytest
import yaml

from agent import config as agent_config
from agent.config import DEFAULT_STATE_DIR, AgentConfig, load_config
from agent.errors import ConfigError
from protocol.wallets import stellar_address, to_checksum_address
from tests.factories import new_wallet

COLLECTOR = "https://collector.example"
# The EIP-55 specification's own example, in its checksummed spelling.
CHECKSUMMED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


@pytest.fixture
def write_config(tmp_path):
    """``write_config(interval=60)``: a YAML file with these settings (and nothing else)."""

    def write(**values) -> Path:
        path = tmp_path / "agent.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    return write


@pytest.fixture
def wallet() -> str:
    return new_wallet()


@pytest.fixture
def minimal(write_config, wallet):
    """``minimal(**more)``: a file holding the two required settings plus ``more``."""

    def write(**more) -> Path:
        return write_config(collector_url=COLLECTOR, wallet=wallet, **more)

    return write


def problems_of(path: Path | None, environ: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ)
    return str(caught.value)


# --- what a valid file gives ----------------------------------------------------------------


def test_a_file_with_the_required_settings_gives_the_defaults_for_the_rest(minimal, wallet):
    config = load_config(minimal(), {})

    assert config == AgentConfig(collector_url=COLLECTOR, wallet=wallet)
    assert config.interval == 300
    assert config.state_dir == DEFAULT_STATE_DIR
    assert config.key_path == DEFAULT_STATE_DIR / "agent.key"
    assert config.spool_path == DEFAULT_STATE_DIR / "spool"
    assert config.docker_host is None  # where the docker CLI would look (agent/engine.py)
    assert config.docker_environment == ()


def test_key_and_spool_paths_default_under_the_state_dir(minimal):
    config = load_config(minimal(state_dir="/srv/tassium"), {})

    assert config.state_dir == Path("/srv/tassium")
    assert config.key_path == Path("/srv/tassium/agent.key")
    assert config.spool_path == Path("/srv/tassium/spool")
    assert config.status_path == Path("/srv/tassium/status.json")


def test_explicit_key_and_spool_paths_are_kept_apart_from_the_state_dir(minimal):
    config = load_config(
        minimal(state_dir="/srv/tassium", key_path="/etc/keys/a.key", spool_path="/spool"), {}
    )

    assert config.key_path == Path("/etc/keys/a.key")
    assert config.spool_path == Path("/spool")
    assert isinstance(config.key_path, Path)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://collector.example/", "https://collector.example"),
        ("http://collector.example:8000/api//", "http://collector.example:8000/api"),
        ("https://collector.example", "https://collector.example"),
    ],
)
def test_a_trailing_slash_is_trimmed_from_the_collector_url(write_config, wallet, given, kept):
    config = load_config(write_config(collector_url=given, wallet=wallet), {})

    assert config.collector_url == kept


def test_a_whole_number_in_the_file_is_accepted_for_a_decimal_setting(minimal):
    config = load_config(minimal(jitter=0, docker_timeout=3), {})

    assert config.jitter == 0.0
    assert isinstance(config.jitter, float)
    assert config.docker_timeout == 3.0
    assert isinstance(config.docker_timeout, float)


# --- required settings ----------------------------------------------------------------------


def test_both_required_settings_are_reported_when_missing(write_config):
    path = write_config(interval=60)

    message = problems_of(path, {})

    assert f"collector_url: missing (set it in {path} or TASSIUM_COLLECTOR_URL)" in message
    assert f"wallet: missing (set it in {path} or TASSIUM_WALLET)" in message


@pytest.mark.parametrize(
    ("present", "missing"), [("wallet", "collector_url"), ("collector_url", "wallet")]
)
def test_one_missing_required_setting_is_reported_alone(write_config, wallet, present, missing):
    path = write_config(**{present: {"wallet": wallet, "collector_url": COLLECTOR}[present]})

    message = problems_of(path, {})

    assert f"{missing}: missing" in message
    assert f"{present}: missing" not in message


def test_the_required_settings_can_come_from_the_environment_alone(tmp_path, monkeypatch, wallet):
    monkeypatch.setattr(agent_config, "DEFAULT_CONFIG_PATH", tmp_path / "absent.yaml")

    config = load_config(None, {"TASSIUM_COLLECTOR_URL": COLLECTOR, "TASSIUM_WALLET": wallet})

    assert (config.collector_url, config.wallet) == (COLLECTOR, wallet)


def test_the_default_file_is_read_when_no_path_is_given(minimal, monkeypatch):
    monkeypatch.setattr(agent_config, "DEFAULT_CONFIG_PATH", minimal(interval=42))

    assert load_config(None, {}).interval == 42


# --- the file: which one, and when it must exist --------------------------------------------


def test_an_explicit_config_file_that_does_not_exist_is_an_error(tmp_path, wallet):
    path = tmp_path / "nowhere.yaml"
    environ = {"TASSIUM_COLLECTOR_URL": COLLECTOR, "TASSIUM_WALLET": wallet}

    assert f"{path}: no such file" in problems_of(path, environ)


def test_tassium_config_names_the_file_and_makes_it_required(tmp_path, minimal, wallet):
    assert load_config(None, {"TASSIUM_CONFIG": str(minimal(interval=77))}).interval == 77

    missing = tmp_path / "nowhere.yaml"
    environ = {
        "TASSIUM_CONFIG": str(missing),
        "TASSIUM_COLLECTOR_URL": COLLECTOR,
        "TASSIUM_WALLET": wallet,
    }
    assert f"{missing}: no such file" in problems_of(None, environ)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("collector_url: [unclosed", "cannot be read"),
        ("- a list\n- not a mapping\n", "must be a mapping of keys to values"),
        ("just text", "must be a mapping of keys to values"),
    ],
)
def test_a_file_that_is_not_a_mapping_of_settings_is_an_error(tmp_path, text, complaint):
    path = tmp_path / "agent.yaml"
    path.write_text(text)

    assert f"{path}: {complaint}" in problems_of(path, {})


def test_an_empty_file_is_no_settings_at_all(tmp_path, wallet):
    path = tmp_path / "agent.yaml"
    path.write_text("")

    config = load_config(path, {"TASSIUM_COLLECTOR_URL": COLLECTOR, "TASSIUM_WALLET": wallet})

    assert config.collector_url == COLLECTOR


# --- environment overrides ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "in_file", "variable", "expected"),
    [
        ("interval", 300, "60", 60),  # int
        ("spool_max", 10, "25", 25),
        ("jitter", 0.1, "0.25", 0.25),  # float
        ("docker_timeout", 10.0, "2", 2.0),  # a whole number is a float too
        ("retry_base", 10.0, "1.5", 1.5),
        ("docker_host", "unix:///a.sock", "tcp://127.0.0.1:2375", "tcp://127.0.0.1:2375"),  # str
        ("log_level", "INFO", "DEBUG", "DEBUG"),
        ("collector_url", COLLECTOR, "http://other.example:81/", "http://other.example:81"),
        ("state_dir", "/srv/a", "/srv/b", Path("/srv/b")),
        ("key_path", "/srv/a.key", "/srv/b.key", Path("/srv/b.key")),
    ],
)
def test_a_tassium_variable_beats_the_file(write_config, wallet, key, in_file, variable, expected):
    values = {"collector_url": COLLECTOR, "wallet": wallet, key: in_file}
    path = write_config(**values)

    config = load_config(path, {f"TASSIUM_{key.upper()}": variable})

    assert getattr(config, key) == expected
    assert type(getattr(config, key)) is type(expected)


def test_the_docker_variables_are_captured_once_for_the_engine(minimal):
    environ = {
        "DOCKER_HOST": "tcp://10.0.0.5:2376",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": "/etc/tassium/docker",
        "DOCKER_CONTEXT": "worker",
        "DOCKER_CONFIG": "/root/.docker",
        "DOCKER_OTHER": "ignored",
    }

    config = load_config(minimal(), environ)

    assert dict(config.docker_environment) == {
        k: v for k, v in environ.items() if k != "DOCKER_OTHER"
    }
    assert config.docker_host is None  # the environment's, as the docker CLI reads it
    hash(config)  # still a frozen, hashable value


def test_docker_host_in_the_file_is_kept_beside_the_docker_variables(minimal):
    config = load_config(minimal(docker_host="ssh://deploy@worker"), {"DOCKER_HOST": "tcp://x:1"})

    assert config.docker_host == "ssh://deploy@worker"  # it wins, as docker -H does
    assert config.docker_environment == (("DOCKER_HOST", "tcp://x:1"),)


@pytest.mark.parametrize(
    "host", ["unix:///run/docker.sock", "tcp://10.0.0.5:2376", "https://d:2376", "ssh://u@h:22"]
)
def test_every_address_the_docker_cli_takes_is_a_docker_host(minimal, host):
    assert load_config(minimal(), {"TASSIUM_DOCKER_HOST": host}).docker_host == host


def test_the_wallet_from_the_environment_beats_the_file(minimal):
    other = new_wallet()

    assert load_config(minimal(), {"TASSIUM_WALLET": other}).wallet == other


def test_an_unrelated_variable_is_ignored(minimal):
    config = load_config(minimal(), {"TASSIUM_NO_SUCH_SETTING": "1", "INTERVAL": "5"})

    assert config.interval == 300
    assert config.warnings == (
        "TASSIUM_NO_SUCH_SETTING is not a setting of the agent: it is ignored",
    )


def test_a_mistyped_variable_is_warned_about_with_the_one_meant(minimal):
    config = load_config(minimal(), {"TASSIUM_INTERVALL": "60"})

    assert config.interval == 300
    assert config.warnings == (
        "TASSIUM_INTERVALL is not a setting of the agent: it is ignored; "
        "did you mean TASSIUM_INTERVAL?",
    )


def test_the_collectors_variables_and_the_config_file_are_no_mistake(minimal):
    # One machine may run both programs, with both sets of variables in its environment.
    path = minimal()
    environ = {
        "TASSIUM_CONFIG": str(path),
        "TASSIUM_API_TOKEN": "t" * 32,
        "TASSIUM_DATABASE_URL": "sqlite:////var/lib/c.db",
        "TASSIUM_PORT": "8000",
        "TASSIUM_INTERVAL": "60",
    }

    assert load_config(None, environ).warnings == ()


def test_the_agent_knows_every_variable_of_the_collector():
    # Written out in agent/config.py, which may not import the collector: kept equal here.
    from collector.config import RULES

    assert set(RULES) == agent_config.COLLECTOR_SETTINGS, (
        "agent/config.py's COLLECTOR_SETTINGS must name the collector's settings, as RULES does"
    )


def test_a_refused_configuration_names_the_variable_that_was_probably_meant(write_config):
    path = write_config(collector_url=COLLECTOR)
    said = problems_of(path, {"TASSIUM_WALLETT": CHECKSUMMED})

    assert said.splitlines()[1:] == [
        f"  wallet: missing (set it in {path} or TASSIUM_WALLET)",
        "  TASSIUM_WALLETT is not a setting of the agent: it is ignored; "
        "did you mean TASSIUM_WALLET?",
    ]


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("TASSIUM_INTERVAL", "soon", "must be a whole number, not 'soon'"),
        ("TASSIUM_INTERVAL", "1.5", "must be a whole number, not '1.5'"),
        ("TASSIUM_INTERVAL", "0", "must be seconds, from 1 to 86400, not 0"),
        ("TASSIUM_JITTER", "lots", "must be a number, not 'lots'"),
        ("TASSIUM_JITTER", "0.9", "must be a fraction of the interval, 0 to 0.5, not 0.9"),
        ("TASSIUM_DOCKER_TIMEOUT", "0", "must be seconds, above 0, not 0.0"),
        ("TASSIUM_LOG_LEVEL", "LOUD", "must be one of DEBUG, INFO, WARNING, ERROR, not 'LOUD'"),
        ("TASSIUM_COLLECTOR_URL", "collector.example", "must be an http(s) URL"),
        (
            "TASSIUM_DOCKER_HOST",
            "/var/run/docker.sock",
            "must be a unix://, tcp://, http(s):// or ssh:// address",
        ),
        ("TASSIUM_WALLET_FORMAT", "bitcoin", "must be one of evm, stellar"),
    ],
)
def test_a_bad_variable_is_reported_by_its_name(minimal, variable, value, complaint):
    message = problems_of(minimal(), {variable: value})

    assert f"{variable}: {complaint}" in message


# --- problems in the file -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "complaint"),
    [
        ("interval", "300", "must be a whole number, not '300'"),
        ("interval", True, "must be a whole number, not True"),
        ("interval", 86401, "must be seconds, from 1 to 86400"),
        ("jitter", "0.1", "must be a number"),
        ("spool_max", 0, "must be from 1 to 1000000"),
        ("collector_url", "ftp://collector.example", "must be an http(s) URL"),
        ("log_level", "debug", "must be one of DEBUG, INFO, WARNING, ERROR"),
        ("wallet", 12345, "must be text"),
    ],
)
def test_a_bad_value_in_the_file_is_reported_by_file_and_key(
    write_config, wallet, key, value, complaint
):
    path = write_config(**{"collector_url": COLLECTOR, "wallet": wallet, key: value})

    assert f"{path}: {key}: {complaint}" in problems_of(path, {})


@pytest.mark.parametrize("key", ["state_dir", "key_path", "spool_path"])
@pytest.mark.parametrize("where", ["file", "environment"])
def test_a_relative_path_is_rejected(minimal, key, where):
    if where == "file":
        path = minimal(**{key: "var/lib/tassium"})
        source, environ = f"{path}: {key}", {}
    else:
        path = minimal()
        source, environ = f"TASSIUM_{key.upper()}", {f"TASSIUM_{key.upper()}": "var/lib/tassium"}

    assert f"{source}: must be an absolute path, not 'var/lib/tassium'" in problems_of(
        path, environ
    )


def test_an_unknown_key_is_rejected(minimal):
    path = minimal(colour="blue")

    assert f"{path}: colour: unknown setting" in problems_of(path, {})


def test_retry_base_above_retry_max_is_rejected(minimal):
    message = problems_of(minimal(retry_base=60, retry_max=30), {})

    assert "retry_base: must not exceed retry_max" in message


def test_every_problem_in_the_file_and_environment_is_reported_at_once(minimal):
    path = minimal(interval="often", jitter=2, docker_host="ftp://x", colour="blue")

    message = problems_of(path, {"TASSIUM_SPOOL_MAX": "many", "TASSIUM_KEY_PATH": "agent.key"})

    for expected in (
        f"{path}: interval: must be a whole number",
        f"{path}: jitter: must be a fraction of the interval",
        f"{path}: docker_host: must be a unix://, tcp://, http(s):// or ssh:// address",
        f"{path}: colour: unknown setting",
        "TASSIUM_SPOOL_MAX: must be a whole number, not 'many'",
        "TASSIUM_KEY_PATH: must be an absolute path",
    ):
        assert expected in message
    assert message.count("\n  ") == 6  # one line each, nothing else


def test_a_bad_value_and_missing_required_settings_are_reported_together(write_config):
    path = write_config(interval="often")

    message = problems_of(path, {})

    assert f"{path}: interval: must be a whole number" in message
    assert "collector_url: missing" in message
    assert "wallet: missing" in message


def test_a_bad_value_and_a_bad_wallet_are_reported_together(write_config):
    path = write_config(collector_url=COLLECTOR, wallet="0x1234", interval="often")

    message = problems_of(path, {})

    assert f"{path}: interval: must be a whole number" in message
    assert "wallet: wallet address must be 0x followed by 40 hex digits" in message


# --- the wallet -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        CHECKSUMMED,
        CHECKSUMMED.lower(),
        "0x" + CHECKSUMMED[2:].upper(),  # all one case: no checksum to check
    ],
    ids=["eip55-mixed-case", "lower-case", "upper-case"],
)
def test_a_valid_evm_wallet_is_stored_lower_case(write_config, given):
    config = load_config(write_config(collector_url=COLLECTOR, wallet=given), {})

    assert config.wallet == CHECKSUMMED.lower()


def test_the_wallet_is_lower_cased_when_it_comes_from_the_environment(minimal):
    config = load_config(minimal(), {"TASSIUM_WALLET": CHECKSUMMED})

    assert config.wallet == CHECKSUMMED.lower()


@pytest.mark.parametrize(
    ("given", "complaint"),
    [
        (CHECKSUMMED.replace("aA", "Aa", 1), "fails its EIP-55 checksum"),
        (CHECKSUMMED[:-1], "must be 0x followed by 40 hex digits"),
        ("0x" + "g" * 40, "must be 0x followed by 40 hex digits"),
        (CHECKSUMMED[2:] + "00", "must be 0x followed by 40 hex digits"),
    ],
    ids=["bad-checksum", "too-short", "not-hex", "no-0x"],
)
def test_an_invalid_wallet_is_rejected(write_config, given, complaint):
    assert to_checksum_address(CHECKSUMMED) == CHECKSUMMED  # the fixture itself is valid

    message = problems_of(write_config(collector_url=COLLECTOR, wallet=given), {})

    assert f"wallet: wallet address {complaint}" in message


def test_a_stellar_wallet_is_accepted_when_the_format_is_stellar(write_config):
    address = stellar_address(bytes(range(32)))

    config = load_config(
        write_config(collector_url=COLLECTOR, wallet=address, wallet_format="stellar"), {}
    )

    assert (config.wallet, config.wallet_format) == (address, "stellar")


def test_a_stellar_wallet_is_rejected_under_the_default_evm_format(write_config):
    path = write_config(collector_url=COLLECTOR, wallet=stellar_address(bytes(range(32))))

    assert "wallet: wallet address must be 0x followed by 40 hex digits" in problems_of(path, {})


def test_a_required_setting_with_a_bad_value_is_not_also_reported_missing(write_config, wallet):
    path = write_config(collector_url="ftp://collector.example", wallet=wallet)

    message = problems_of(path, {})

    assert f"{path}: collector_url: must be an http(s) URL" in message
    assert "collector_url: missing" not in message


def test_a_bad_wallet_format_is_not_also_blamed_on_the_wallet(write_config):
    address = stellar_address(bytes(range(32)))
    path = write_config(collector_url=COLLECTOR, wallet=address, wallet_format="stellr")

    message = problems_of(path, {})

    assert f"{path}: wallet_format: must be one of evm, stellar" in message
    assert "wallet: wallet address" not in message


def test_a_bad_retry_base_is_not_also_compared_with_retry_max(minimal):
    path = minimal(retry_base="soon", retry_max=5)

    message = problems_of(path, {})

    assert f"{path}: retry_base: must be a number" in message
    assert "must not exceed" not in message


# --- the collector's CA bundle and proxies ---------------------------------------------------


def test_a_ca_bundle_is_read_as_a_path_and_defaults_to_none(minimal, tmp_path):
    assert load_config(minimal(), {}).ca_bundle is None
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")

    assert load_config(minimal(ca_bundle=str(bundle)), {}).ca_bundle == bundle
    assert load_config(minimal(), {"TASSIUM_CA_BUNDLE": str(bundle)}).ca_bundle == bundle


@pytest.mark.parametrize(
    ("make", "complaint"),
    [
        (lambda d: d / "missing.pem", "does not exist: name the PEM file holding the collector"),
        (lambda d: d, "is a directory: name one PEM file"),
        (lambda d: _written(d / "key.pem", "-----BEGIN PRIVATE KEY-----"), "holds no PEM cert"),
    ],
    ids=["missing", "directory", "not-a-certificate"],
)
def test_a_ca_bundle_that_cannot_be_used_is_named_at_load(minimal, tmp_path, make, complaint):
    bundle = make(tmp_path)

    assert f"ca_bundle: {bundle} {complaint}" in problems_of(minimal(ca_bundle=str(bundle)), {})


def test_a_relative_ca_bundle_is_rejected(minimal):
    message = problems_of(minimal(), {"TASSIUM_CA_BUNDLE": "ca.pem"})

    assert "TASSIUM_CA_BUNDLE: must be an absolute path, not 'ca.pem'" in message


def _written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_proxy_variables_are_captured_lower_case_first(minimal):
    environ = {
        "http_proxy": "http://lower:3128",
        "HTTP_PROXY": "http://upper:3128",
        "HTTPS_PROXY": "https://secure:3129",
        "ALL_PROXY": "proxy:8080",
        "no_proxy": "localhost,.internal",
        "NO_PROXY": "",
    }

    proxies = load_config(minimal(), environ).proxies

    assert (proxies.http, proxies.https, proxies.all, proxies.no) == (
        "http://lower:3128",
        "https://secure:3129",
        "proxy:8080",
        "localhost,.internal",
    )
    assert load_config(minimal(), {}).proxies == agent_config.Proxies()


def test_a_proxy_password_is_not_shown(minimal):
    config = load_config(minimal(), {"HTTPS_PROXY": "http://owner:s3cret@proxy:3128"})

    assert config.proxies.https == "http://owner:s3cret@proxy:3128"
    assert "s3cret" not in repr(config) and "owner:***@proxy:3128" in repr(config)


def test_a_socks_proxy_is_rejected_with_a_sentence(minimal):
    message = problems_of(minimal(), {"all_proxy": "socks5://user:pw@proxy:1080"})

    assert (
        "ALL_PROXY: must be an http:// or https:// proxy, not 'socks5://user:***@proxy:1080'"
        in (message)
    )
