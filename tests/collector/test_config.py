"""collector/config.py: YAML file, TASSIUM_* overrides, every problem reported at once."""

from pathlib import Path

import pytest
import yaml

from collector import config as config_module
from collector.config import CollectorConfig, ConfigError, load_config

TOKEN = "a-long-enough-api-token-0123"


@pytest.fixture
def write_yaml(tmp_path):
    """Write a YAML config file (mode 0600 unless told) and return its path."""

    def write(values: dict | str, mode: int = 0o600, name: str = "collector.yaml") -> Path:
        path = tmp_path / name
        path.write_text(values if isinstance(values, str) else yaml.safe_dump(values))
        path.chmod(mode)
        return path

    return write


def problems_of(path: Path | None, environ: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ)
    assert str(caught.value).startswith("invalid collector configuration:")
    for problem in caught.value.problems:
        assert problem in str(caught.value)
    return caught.value.problems


# --- where values come from -----------------------------------------------------------------


def test_it_uses_the_defaults_when_the_default_file_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", tmp_path / "absent.yaml")
    assert load_config(None, {}) == CollectorConfig()


def test_it_reads_the_default_file_when_it_exists(write_yaml, monkeypatch):
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", write_yaml({"port": 9001}))
    assert load_config(None, {}).port == 9001


def test_an_explicit_path_that_is_missing_is_an_error(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert problems_of(missing, {}) == [f"{missing}: no such file"]


def test_a_missing_file_named_by_tassium_config_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", tmp_path / "absent.yaml")
    missing = tmp_path / "nope.yaml"
    assert problems_of(None, {"TASSIUM_CONFIG": str(missing)}) == [f"{missing}: no such file"]


def test_tassium_config_names_the_file_to_read(write_yaml):
    path = write_yaml({"gap": 600})
    assert load_config(None, {"TASSIUM_CONFIG": str(path)}).gap == 600


def test_an_empty_file_means_the_defaults(write_yaml):
    assert load_config(write_yaml(""), {}) == CollectorConfig()


def test_it_reads_every_kind_of_value_from_yaml(write_yaml):
    path = write_yaml(
        {
            "database_url": "postgresql://tassium@db.internal:5432/tassium",
            "host": "192.0.2.10",
            "port": 8443,
            "api_token": TOKEN,
            "cors_origins": ["https://app.tassium.example", "http://localhost:3000"],
            "wallet_format": "stellar",
            "require_signatures": False,
            "enrollment_policy": "token",
            "gap": 900,
            "sweep_interval": 0,
            "log_level": "DEBUG",
        }
    )
    config = load_config(path, {})
    assert config == CollectorConfig(
        database_url="postgresql://tassium@db.internal:5432/tassium",
        host="192.0.2.10",
        port=8443,
        api_token=TOKEN,
        cors_origins=("https://app.tassium.example", "http://localhost:3000"),
        wallet_format="stellar",
        require_signatures=False,
        enrollment_policy="token",
        gap=900,
        sweep_interval=0,
        log_level="DEBUG",
    )
    assert config.is_postgres


def test_environment_variables_beat_the_file(write_yaml):
    path = write_yaml({"port": 9000, "gap": 600, "wallet_format": "evm"})
    config = load_config(path, {"TASSIUM_PORT": "9100", "TASSIUM_WALLET_FORMAT": "stellar"})
    assert (config.port, config.gap, config.wallet_format) == (9100, 600, "stellar")


def test_database_url_overrides_the_file(write_yaml):
    path = write_yaml({"database_url": "sqlite:///from-file.db"})
    url = "postgresql://u@h/d"
    config = load_config(path, {"DATABASE_URL": url})
    assert config.database_url == url
    assert config.is_postgres


def test_tassium_database_url_overrides_the_file(write_yaml):
    path = write_yaml({"database_url": "sqlite:///from-file.db"})
    config = load_config(path, {"TASSIUM_DATABASE_URL": "sqlite:///from-env.db"})
    assert config.database_url == "sqlite:///from-env.db"
    assert not config.is_postgres


def test_unrelated_environment_variables_are_ignored(write_yaml):
    path = write_yaml({"port": 9000})
    assert load_config(path, {"PORT": "1", "TASSIUM_AGENT_WALLET": "x"}).port == 9000


# --- parsing environment values -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_it_parses_booleans_from_the_environment(write_yaml, text, expected):
    path = write_yaml({"require_signatures": not expected})
    assert load_config(path, {"TASSIUM_REQUIRE_SIGNATURES": text}).require_signatures is expected


@pytest.mark.parametrize("text", ["maybe", "", "2", "enabled"])
def test_it_rejects_a_boolean_it_cannot_read(text):
    assert problems_of(None, {"TASSIUM_REQUIRE_SIGNATURES": text}) == [
        f"TASSIUM_REQUIRE_SIGNATURES: must be true or false, not {text!r}"
    ]


@pytest.mark.parametrize(("text", "expected"), [("9100", 9100), (" 4242 ", 4242), ("+7000", 7000)])
def test_it_parses_integers_from_the_environment(write_yaml, text, expected):
    assert load_config(write_yaml({}), {"TASSIUM_PORT": text}).port == expected


@pytest.mark.parametrize("text", ["80.5", "eighty", "", "0x50"])
def test_it_rejects_an_integer_it_cannot_read(write_yaml, text):
    assert problems_of(write_yaml({}), {"TASSIUM_PORT": text}) == [
        f"TASSIUM_PORT: must be a whole number, not {text!r}"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://a.example", ("https://a.example",)),
        (
            "https://a.example, http://b.example:3000",
            ("https://a.example", "http://b.example:3000"),
        ),
        ("https://a.example,,", ("https://a.example",)),
        ("*", ("*",)),
        ("", ()),
    ],
)
def test_it_parses_lists_from_the_environment(write_yaml, text, expected):
    path = write_yaml({"cors_origins": ["https://from-file.example"]})
    assert load_config(path, {"TASSIUM_CORS_ORIGINS": text}).cors_origins == expected


# --- problems -------------------------------------------------------------------------------


def test_it_reports_every_problem_at_once_naming_file_and_key_or_variable(write_yaml):
    path = write_yaml(
        {
            "port": "eighty",
            "gap": 0,
            "wallet_format": "bitcoin",
            "cors_origins": ["ftp://x.example"],
            "colour": "blue",
        }
    )
    problems = problems_of(
        path, {"TASSIUM_PROCESSES": "0", "TASSIUM_LOG_LEVEL": "verbose", "DATABASE_URL": "mysql://"}
    )
    assert sorted(problems) == sorted(
        [
            f"{path}: port: must be a whole number, not 'eighty'",
            f"{path}: gap: must be seconds, at least 1, not 0",
            f"{path}: wallet_format: must be one of evm, stellar, not 'bitcoin'",
            f"{path}: cors_origins: must be http(s) origins or *, not ('ftp://x.example',)",
            f"{path}: colour: unknown setting",
            "TASSIUM_PROCESSES: must be from 1 to 64, not 0",
            "TASSIUM_LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, not 'verbose'",
            "DATABASE_URL: must be a sqlite:///path or postgresql:// URL, not ********",
        ]
    )


def test_a_good_environment_value_replaces_a_bad_file_value(write_yaml):
    path = write_yaml({"port": "eighty"})
    assert load_config(path, {"TASSIUM_PORT": "8080"}).port == 8080


def test_it_rejects_an_unknown_key(write_yaml):
    path = write_yaml({"port": 8000, "sweep_intervall": 5})
    assert problems_of(path, {}) == [f"{path}: sweep_intervall: unknown setting"]


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"port": 0}, "port: must be a port from 1 to 65535, not 0"),
        ({"port": 65536}, "port: must be a port from 1 to 65535, not 65536"),
        ({"port": True}, "port: must be a whole number, not True"),
        ({"port": 80.0}, "port: must be a whole number, not 80.0"),
        ({"require_signatures": "false"}, "require_signatures: must be true or false, not 'false'"),
        (
            {"cors_origins": "https://a.example"},
            "cors_origins: must be a list, not 'https://a.example'",
        ),
        ({"cors_origins": [1]}, "cors_origins: must be a list of strings"),
        ({"host": ""}, "host: must be a host name or address, not ''"),
        (
            {"deployment_url_template": "https://app.example"},
            "deployment_url_template: must be an http(s) URL containing {name}, "
            "not 'https://app.example'",
        ),
        (
            {"database_url": "tassium.db"},
            "database_url: must be a sqlite:///path or postgresql:// URL, not ********",
        ),
    ],
)
def test_it_names_the_key_and_the_rule_a_file_value_breaks(write_yaml, values, problem):
    path = write_yaml(values)
    assert problems_of(path, {}) == [f"{path}: {problem}"]


# The install script checks these again with the same patterns (tests/packaging): a value
# taken here is one the served script takes too.
PUBLIC_URL_RULE = (
    "public_url: must be an http(s)://host[:port][/path] URL (host: a DNS name, IPv4 address"
    " or [IPv6] address; port: 1 to 65535; path: letters, digits and ._~/- only)"
)


@pytest.mark.parametrize(
    "url",
    [
        "https://tassium.example.com",
        "http://10.0.0.5:8000/collector/",
        "http://[2001:db8::1]:65535",
        "http://collector",
    ],
)
def test_it_accepts_a_public_url_workers_can_be_given(write_yaml, url):
    assert load_config(write_yaml({"public_url": url}), {}).public_url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://a:b:c",
        "http://collector:0",
        "http://collector:65536",
        "http://collector.example./",
        "http://user:pw@collector",
        "http://collector/?wallet=x",
        "http://collector/'$(touch x)'",
        "ftp://collector",
        "collector.example",
    ],
)
def test_it_refuses_a_public_url_the_install_script_would_refuse(write_yaml, url):
    path = write_yaml({"public_url": url})
    assert problems_of(path, {}) == [f"{path}: {PUBLIC_URL_RULE}, not {url!r}"]
    from_environment = problems_of(write_yaml({}), {"TASSIUM_PUBLIC_URL": url})
    rule = PUBLIC_URL_RULE.removeprefix("public_url: ")
    assert from_environment == [f"TASSIUM_PUBLIC_URL: {rule}, not {url!r}"]


@pytest.mark.parametrize("package", ["tassium agent", "tassium;x", "tassium#egg", "$(x)"])
def test_it_refuses_an_agent_package_the_install_script_would_refuse(write_yaml, package):
    path = write_yaml({"agent_package": package})
    assert problems_of(path, {}) == [
        f"{path}: agent_package: must be a pip requirement or URL, not {package!r}"
    ]


@pytest.mark.parametrize("document", ["- port\n- 8000\n", "just text\n"])
def test_it_rejects_a_file_that_is_not_a_mapping(write_yaml, document):
    path = write_yaml(document)
    assert problems_of(path, {}) == [f"{path}: must be a mapping of keys to values"]


def test_it_rejects_a_file_that_is_not_yaml(write_yaml):
    path = write_yaml("port: [8000\n")
    (problem,) = problems_of(path, {})
    assert problem.startswith(f"{path}: cannot be read:")


# --- secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_it_rejects_an_api_token_in_a_file_others_can_read(write_yaml, mode):
    path = write_yaml({"api_token": TOKEN}, mode=mode)
    assert problems_of(path, {}) == [
        f"{path}: holds a secret but is readable by others (chmod 600)"
    ]


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_it_accepts_an_api_token_in_a_file_only_its_owner_can_read(write_yaml, mode):
    assert load_config(write_yaml({"api_token": TOKEN}, mode=mode), {}).api_token == TOKEN


def test_a_readable_file_without_a_token_is_fine_with_the_token_from_the_environment(write_yaml):
    path = write_yaml({"port": 8000}, mode=0o644)
    assert load_config(path, {"TASSIUM_API_TOKEN": TOKEN}).api_token == TOKEN


def test_the_readable_file_is_reported_together_with_the_other_problems(write_yaml):
    path = write_yaml({"api_token": TOKEN, "port": -1}, mode=0o644)
    assert problems_of(path, {}) == [
        f"{path}: port: must be a port from 1 to 65535, not -1",
        f"{path}: holds a secret but is readable by others (chmod 600)",
    ]


@pytest.mark.parametrize(
    "token, said",
    [("short-secret", "********"), (123456789, "YAML read it as a number")],
)
def test_a_rejected_api_token_is_not_shown_in_the_error(write_yaml, token, said):
    path = write_yaml({"api_token": token})
    (problem,) = problems_of(path, {})
    assert problem.startswith(f"{path}: api_token: must be")
    assert str(token) not in problem
    assert said in problem


@pytest.mark.parametrize(
    "url", ["postgresql+psycopg2://tassium:hunter2-pw@db/t", "mysql://tassium:hunter2-pw@db/t"]
)
def test_a_rejected_database_url_does_not_show_its_password(write_yaml, url):
    (from_env,) = problems_of(write_yaml({}), {"DATABASE_URL": url})
    (from_file,) = problems_of(write_yaml({"database_url": url}), {})
    for problem in (from_env, from_file):
        assert "must be a sqlite:///path or postgresql:// URL" in problem
        assert "hunter2-pw" not in problem


def test_repr_masks_the_api_token_and_the_database_password():
    config = CollectorConfig(
        api_token=TOKEN, database_url="postgresql://tassium:hunter2-pw@db.internal:5432/tassium"
    )
    for shown in (repr(config), str(config), f"{config}"):
        assert TOKEN not in shown
        assert "hunter2-pw" not in shown
        assert "api_token='********'" in shown
        assert "postgresql://tassium:********@db.internal:5432/tassium" in shown
    # The object itself keeps the real values.
    assert config.api_token == TOKEN
    assert "hunter2-pw" in config.database_url


def test_repr_shows_that_no_token_is_configured():
    shown = repr(CollectorConfig(database_url="postgresql://tassium@db/tassium"))
    assert "api_token=None" in shown
    assert "postgresql://tassium@db/tassium" in shown


# --- rate limits ----------------------------------------------------------------------------

RATE_LIMIT_RULE = (
    'must be requests per window, as in "10/minute" or "100 per 2 hours" (several joined by '
    '";"; a window of a second to a year), or "0" to turn it off'
)


def test_rate_limits_default_to_10_enrollments_and_120_writes_a_minute(write_yaml):
    config = load_config(write_yaml({}), {})
    assert (config.rate_limit_enrollment, config.rate_limit_writes) == ("30/minute", "120/minute")


@pytest.mark.parametrize("text", ["5/second", "100 per 2 hours", "10/minute; 100/hour", "1/year"])
def test_it_accepts_rate_limits_in_the_limits_notation(write_yaml, text):
    path = write_yaml({"rate_limit_writes": text})
    assert load_config(path, {}).rate_limit_writes == text
    environ = {"TASSIUM_RATE_LIMIT_ENROLLMENT": text}
    assert load_config(write_yaml({}), environ).rate_limit_enrollment == text


@pytest.mark.parametrize("text", ["0", "", " "])
def test_a_rate_limit_of_0_or_nothing_is_off(write_yaml, text):
    assert load_config(write_yaml({"rate_limit_writes": text}), {}).rate_limit_writes == text
    environ = {"TASSIUM_RATE_LIMIT_ENROLLMENT": text}
    assert load_config(write_yaml({}), environ).rate_limit_enrollment == text


@pytest.mark.parametrize("text", ["ten a minute", "10", "10/fortnight", "0/minute", "1/2 years"])
def test_it_refuses_a_rate_limit_it_cannot_count(write_yaml, text):
    path = write_yaml({"rate_limit_writes": text})
    assert problems_of(path, {}) == [f"{path}: rate_limit_writes: {RATE_LIMIT_RULE}, not {text!r}"]
    assert problems_of(None, {"TASSIUM_RATE_LIMIT_ENROLLMENT": text}) == [
        f"TASSIUM_RATE_LIMIT_ENROLLMENT: {RATE_LIMIT_RULE}, not {text!r}"
    ]


def test_an_unquoted_0_in_the_file_is_told_to_be_quoted(write_yaml):
    path = write_yaml("rate_limit_writes: 0\n")
    assert problems_of(path, {}) == [
        f"{path}: rate_limit_writes: must be text, but YAML read it as a number: "
        'put the value in quotes, as in rate_limit_writes: "0"'
    ]


def test_the_receipt_key_is_kept_beside_the_sqlite_database_unless_configured(
    tmp_path, monkeypatch
):
    # The embedded default runs wherever its database can be written, so its key does too.
    monkeypatch.chdir(tmp_path)
    assert CollectorConfig().receipt_key_path == tmp_path / "tassium-receipt-signing.key"
    on_disk = CollectorConfig(database_url=f"sqlite:///{tmp_path}/db/c.db")
    assert on_disk.receipt_key_path == tmp_path / "db" / "tassium-receipt-signing.key"
    postgres = CollectorConfig(database_url="postgresql://u@localhost/tassium")
    assert postgres.receipt_key_path == Path(
        "/var/lib/tassium-collector/tassium-receipt-signing.key"
    )
    chosen = CollectorConfig(receipt_key_file=str(tmp_path / "k.pem"))
    assert chosen.receipt_key_path == tmp_path / "k.pem"
