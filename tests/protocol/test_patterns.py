"""protocol/patterns.py: each rule is written once and read alike by Python's ``re`` and by
bash's ``[[ =~ ]]`` (POSIX extended regular expressions), as the install script reads it."""

import re
import subprocess
import warnings

import pytest

from protocol import patterns
from tests.protocol.pattern_cases import CASES, URLS


def python_matches(pattern: str, values: list[str]) -> list[bool]:
    compiled = re.compile(pattern)
    return [compiled.fullmatch(value) is not None for value in values]


def bash_matches(pattern: str, values: list[str]) -> list[bool]:
    """Each value tried by one real bash, anchored the way packaging/setup.sh anchors it."""
    loop = (
        'pattern="^($1)\\$"; export LC_ALL=C\n'
        "while IFS= read -r -d '' value; do\n"
        "    if [[ $value =~ $pattern ]]; then printf 1; else printf 0; fi\n"
        "done\n"
    )
    result = subprocess.run(
        ["bash", "-c", loop, "bash", pattern],
        input="".join(value + "\0" for value in values).encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, b"")
    return [flag == "1" for flag in result.stdout.decode()]


@pytest.mark.parametrize("name", CASES)
def test_python_accepts_exactly_the_good_values(name):
    pattern, table = CASES[name]
    assert dict(zip(table, python_matches(pattern, list(table)), strict=True)) == table


@pytest.mark.parametrize("name", CASES)
def test_bash_accepts_exactly_the_good_values(name):
    pattern, table = CASES[name]
    assert dict(zip(table, bash_matches(pattern, list(table)), strict=True)) == table


def test_a_host_header_is_accepted_exactly_when_the_url_made_from_it_is():
    hosts = [url.removeprefix("http://") for url in URLS if url.startswith("http://")]
    hosts = [host for host in hosts if "/" not in host]
    made = python_matches(patterns.COLLECTOR_URL, [f"http://{host}" for host in hosts])
    assert python_matches(patterns.AUTHORITY, hosts) == made
    assert bash_matches(patterns.AUTHORITY, hosts) == made
    assert "a:b:c" in hosts and not made[hosts.index("a:b:c")]


PUBLIC = {name: getattr(patterns, name) for name in dir(patterns) if name.isupper()}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_each_pattern_keeps_to_what_both_languages_read_alike(name):
    pattern = PUBLIC[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "possible nested set" and the like
        re.compile(pattern)
    # Python-only syntax, or a backslash in brackets (POSIX reads it as a backslash).
    assert not re.search(r"\\[dDwWsSbBAZ]|\(\?|[*+?}]\?|\[[^]]*\\", pattern), pattern
    # Quoted in single quotes in the script: a quote would end the quoting.
    assert "'" not in pattern
