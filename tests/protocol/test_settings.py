"""protocol.settings.read_settings, the YAML and environment reader both programs share:
what it tells an owner whose file YAML reads differently from what they meant."""

from pathlib import Path

import pytest

from protocol.settings import Rule, SettingsError, read_settings

RULES = {
    "name": Rule(str),
    "token": Rule(str, secret=True),
    "count": Rule(int),
    "ratio": Rule(float),
    "origins": Rule(tuple),
}


def problems(text: str | bytes, tmp_path: Path, environ: dict[str, str] | None = None):
    path = tmp_path / "settings.yaml"
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    with pytest.raises(SettingsError) as caught:
        read(path, environ)
    return path, caught.value.problems


def read(path: Path, environ: dict[str, str] | None = None) -> dict[str, object]:
    return read_settings(
        "test", RULES, path, explicit=True, environ=environ or {}, env_prefix="TEST_"
    )


@pytest.mark.parametrize(
    ("written", "read_as"),
    [
        ("0xC6592b9d0b8bc6f1a5e5fd8ce0b7cd1a2b3c4d5e", "a number"),  # hex
        ("0755", "a number"),  # octal in YAML 1.1
        ("1.5e+3", "a number"),
        ("12345", "a number"),
        ("1_000", "a number"),
        ("3.5", "a number"),
        ("yes", "true or false"),
        ("off", "true or false"),
        ("2026-01-01", "a date"),
    ],
)
def test_text_that_yaml_reads_as_something_else_is_told_to_be_quoted(tmp_path, written, read_as):
    path, found = problems(f"name: {written}\n", tmp_path)
    assert found == [
        f"{path}: name: must be text, but YAML read it as {read_as}: put the value in quotes, "
        f'as in name: "{written}"'
    ]


def test_the_quoted_value_it_suggests_is_read_as_the_text_written(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text('name: "0xC6592b9d0b8bc6f1a5e5fd8ce0b7cd1a2b3c4d5e"\n')
    assert read(path) == {"name": "0xC6592b9d0b8bc6f1a5e5fd8ce0b7cd1a2b3c4d5e"}


def test_the_hint_never_shows_a_secret(tmp_path):
    path, found = problems("token: 0x1234567890abcdef\n", tmp_path)
    assert found == [
        f"{path}: token: must be text, but YAML read it as a number: put the value in quotes"
    ]


def test_a_value_that_is_not_plain_text_in_the_file_gets_no_example(tmp_path):
    # Only a plain scalar's text is worth repeating in quotes; a tagged one was meant as it is.
    path, found = problems("name: !!int '12'\n", tmp_path)
    assert found == [
        f"{path}: name: must be text, but YAML read it as a number: put the value in quotes"
    ]


def test_text_from_the_environment_is_never_read_as_a_number(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("count: 3\n")
    assert read(path, {"TEST_NAME": "0xC659"})["name"] == "0xC659"


def test_a_number_is_still_refused_where_a_number_is_wanted_with_the_value_shown(tmp_path):
    path, found = problems("count: many\n", tmp_path)
    assert found == [f"{path}: count: must be a whole number, not 'many'"]


@pytest.mark.parametrize("key", ["name", "count", "origins"])
def test_an_empty_value_is_called_empty(tmp_path, key):
    path, found = problems(f"{key}:\n", tmp_path)
    assert found == [
        f"{path}: {key}: is empty: give it a value, or remove the line to get the default"
    ]


def test_every_problem_is_reported_at_once(tmp_path):
    path, found = problems("name: 0x12\ncount: x\nratio:\n", tmp_path)
    assert [problem.split(":")[1].strip() for problem in found] == ["name", "count", "ratio"]


# --- a file that cannot be read is one line naming where ------------------------------------


def test_a_file_that_is_not_utf8_names_the_byte(tmp_path):
    path, found = problems(b"name: caf\xe9\n", tmp_path)
    assert found == [f"{path}: cannot be read: not UTF-8 text (byte 10)"]


def test_a_utf8_byte_order_mark_is_fine(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_bytes(b"\xef\xbb\xbfname: caf\xc3\xa9\n")
    assert read(path) == {"name": "café"}


def test_a_control_character_is_named(tmp_path):
    path, found = problems("name: a\x01b\n", tmp_path)
    assert found == [f"{path}: cannot be read: holds a character YAML does not allow (#x0001)"]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("name: [a, b\n", "not valid YAML at line 2, column 1: expected ',' or ']'"),
        ("name: a\n  count: 3\n", "not valid YAML at line 2, column 8: mapping values are not"),
        ('name: "open\n', "not valid YAML at line 2, column 1: found unexpected end of stream"),
    ],
)
def test_a_yaml_syntax_error_is_one_line_with_its_line_and_column(tmp_path, text, said):
    path, found = problems(text, tmp_path)
    (problem,) = found
    assert problem.startswith(f"{path}: cannot be read: {said}")
    assert "\n" not in problem and "<byte string>" not in problem


def test_a_directory_given_as_the_file_says_so(tmp_path):
    with pytest.raises(SettingsError) as caught:
        read(tmp_path)
    assert caught.value.problems == [f"{tmp_path}: cannot be read: Is a directory"]


# --- variables that name no setting ---------------------------------------------------------


def warned(environ: dict[str, str], tmp_path: Path, **options) -> tuple[str, ...]:
    path = tmp_path / "settings.yaml"
    path.write_text("count: 3\n")
    return read_settings(
        "test", RULES, path, explicit=True, environ=environ, env_prefix="TEST_", **options
    ).warnings


def test_a_mistyped_variable_is_warned_about_with_the_setting_it_resembles(tmp_path):
    assert warned({"TEST_COUNTT": "4", "TEST_RATIO": "0.5"}, tmp_path) == (
        "TEST_COUNTT is not a setting of the test: it is ignored; did you mean TEST_COUNT?",
    )


def test_a_variable_like_no_setting_is_warned_about_without_a_guess(tmp_path):
    # Every name shares the prefix: compared with it, any two would look alike.
    assert warned({"TEST_XYZZY": "1"}, tmp_path) == (
        "TEST_XYZZY is not a setting of the test: it is ignored",
    )


def test_a_variable_the_program_or_another_reads_is_not_warned_about(tmp_path):
    environ = {"TEST_CONFIG": "/etc/x.yaml", "TEST_WALLET": "w", "OTHER": "1", "TEST_NAME": "n"}
    assert (
        warned(environ, tmp_path, own_variables=["TEST_CONFIG"], other_variables=["TEST_WALLET"])
        == ()
    )


def test_a_mistyped_variable_is_still_told_when_a_value_is_refused(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("count: 3\n")
    with pytest.raises(SettingsError) as caught:
        read_settings(
            "test",
            RULES,
            path,
            explicit=True,
            environ={"TEST_COUNT": "x", "TEST_RATO": "1"},
            env_prefix="TEST_",
        )
    assert caught.value.problems == ["TEST_COUNT: must be a whole number, not 'x'"]
    assert caught.value.warnings == (
        "TEST_RATO is not a setting of the test: it is ignored; did you mean TEST_RATIO?",
    )
