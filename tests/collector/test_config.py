"""collector/config.py: YAML file, TASSIUM_* overrides, every problem reported at once."""

import pwd
from pathlib import Path

import pytest
import yaml

from collector import config as config_module
from collector.config import CollectorConfig, ConfigError, load_config, state_directory

TOKEN = "a-long-enough-api-token-0123"
# What systemd gives the unit (StateDirectory=tassium-collector): the defaults, whoever runs
# the tests.
UNDER_SYSTEMD = {"STATE_DIRECTORY": "/var/lib/tassium-collector"}


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
    assert load_config(None, UNDER_SYSTEMD) == CollectorConfig()


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
    assert load_config(write_yaml(""), UNDER_SYSTEMD) == CollectorConfig()


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
    config = load_config(path, UNDER_SYSTEMD)
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
    config = load_config(path, {"PORT": "1", "TASSIUM_AGENT_WALLET": "x"})
    assert config.port == 9000
    assert config.warnings == (
        "TASSIUM_AGENT_WALLET is not a setting of the collector: it is ignored",
    )


# --- variables that name no setting ---------------------------------------------------------


def test_a_mistyped_variable_is_warned_about_with_the_one_meant(write_yaml):
    config = load_config(write_yaml({"port": 9000}), {"TASSIUM_GAPP": "60"})
    assert config.gap == CollectorConfig.gap
    assert config.warnings == (
        "TASSIUM_GAPP is not a setting of the collector: it is ignored; did you mean TASSIUM_GAP?",
    )


def test_the_agents_variables_and_the_config_file_are_no_mistake(write_yaml):
    # One machine may run both programs, with both sets of variables in its environment.
    path = write_yaml({"port": 9000})
    environ = {
        "TASSIUM_CONFIG": str(path),
        "TASSIUM_COLLECTOR_URL": "http://127.0.0.1:8000",
        "TASSIUM_WALLET": "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
        "TASSIUM_INTERVAL": "60",
        "DATABASE_URL": "postgresql://u@h/d",
    }
    assert load_config(None, environ).warnings == ()


def test_a_refused_configuration_still_names_the_mistyped_variable(write_yaml):
    # Not a problem of its own, but likely why a setting seems missing: said with them.
    with pytest.raises(ConfigError) as caught:
        load_config(write_yaml({"port": 9000}), {"TASSIUM_PORT": "x", "TASSIUM_API_TOKN": TOKEN})
    assert caught.value.problems == ["TASSIUM_PORT: must be a whole number, not 'x'"]
    assert str(caught.value).splitlines()[1:] == [
        "  TASSIUM_PORT: must be a whole number, not 'x'",
        "  TASSIUM_API_TOKN is not a setting of the collector: it is ignored; "
        "did you mean TASSIUM_API_TOKEN?",
    ]


# --- where the database is ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "euid", "directory"),
    [
        # systemd's StateDirectory=, for whoever the unit runs as (a DynamicUser too)
        (UNDER_SYSTEMD, 61234, "/var/lib/tassium-collector"),
        ({"STATE_DIRECTORY": "/srv/a:/srv/b", "HOME": "/home/dev"}, 1000, "/srv/a"),
        ({"HOME": "/root"}, 0, "/var/lib/tassium-collector"),
        ({"HOME": "/home/dev"}, 1000, "/home/dev/.local/state/tassium-collector"),
        ({"HOME": "/home/dev", "XDG_STATE_HOME": "/xdg"}, 1000, "/xdg/tassium-collector"),
        # The XDG specification ignores a relative path; so does a relative STATE_DIRECTORY.
        (
            {"HOME": "/home/dev", "XDG_STATE_HOME": "xdg", "STATE_DIRECTORY": "s"},
            1000,
            "/home/dev/.local/state/tassium-collector",
        ),
    ],
)
def test_the_state_directory_is_systemds_roots_or_the_users_own(environ, euid, directory):
    assert state_directory(environ, euid) == Path(directory)


def test_without_home_the_state_directory_is_in_the_home_the_password_database_names():
    user = next(u for u in pwd.getpwall() if u.pw_uid != 0 and u.pw_dir.startswith("/"))
    assert state_directory({}, user.pw_uid) == Path(user.pw_dir, ".local/state/tassium-collector")
    # A uid without a name, as in a container, has no home: the system's directory then.
    assert state_directory({}, 2**31 - 5) == Path("/var/lib/tassium-collector")


def test_the_default_database_is_one_absolute_file_whatever_the_working_directory(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", tmp_path / "absent.yaml")
    state = tmp_path / "state"
    for directory in (tmp_path, tmp_path / "elsewhere"):
        directory.mkdir(exist_ok=True)
        monkeypatch.chdir(directory)
        config = load_config(None, {"STATE_DIRECTORY": str(state)})
        assert config.database_url == f"sqlite:///{state}/tassium-collector.db"
        assert config.sqlite_file == state / "tassium-collector.db"
        assert config.database_location == str(state / "tassium-collector.db")
        assert config.state_directory == state
    assert not state.exists()  # reading the configuration creates nothing


def test_the_database_is_named_by_its_absolute_file_or_its_url_without_the_password(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    assert CollectorConfig(database_url="sqlite:///c.db").database_location == str(
        tmp_path / "c.db"
    )
    spaced = CollectorConfig(database_url="sqlite:////srv/my%20state/c.db")
    assert spaced.sqlite_file == Path("/srv/my state/c.db")
    postgres = CollectorConfig(database_url="postgresql://u:s3cret@db:5432/tassium")
    assert postgres.sqlite_file is None
    assert postgres.database_location == "postgresql://u:********@db:5432/tassium"


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
    assert CollectorConfig().receipt_key_path == Path(
        "/var/lib/tassium-collector/tassium-receipt-signing.key"
    )
    relative = CollectorConfig(database_url="sqlite:///c.db")
    assert relative.receipt_key_path == tmp_path / "tassium-receipt-signing.key"
    on_disk = CollectorConfig(database_url=f"sqlite:///{tmp_path}/db/c.db")
    assert on_disk.receipt_key_path == tmp_path / "db" / "tassium-receipt-signing.key"
    # With PostgreSQL, in the state directory: a developer's own, not /var/lib.
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", tmp_path / "absent.yaml")
    postgres = load_config(
        None, {"DATABASE_URL": "postgresql://u@localhost/tassium", "STATE_DIRECTORY": str(tmp_path)}
    )
    assert postgres.receipt_key_path == tmp_path / "tassium-receipt-signing.key"
    chosen = CollectorConfig(receipt_key_file=str(tmp_path / "k.pem"))
    assert chosen.receipt_key_path == tmp_path / "k.pem"
