"""The example alert rules (packaging/prometheus/tassium-alerts.yml): valid and firing as
their unit tests say, by promtool where it is (scripts/test fetches it from Debian's
prometheus package without installing the server); and, with or without it, every
expression evaluated here against what a collector really exports, so that a rule can never
name a series the collector does not have."""

import operator
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from collector.store.models import Worker
from protocol.times import utcnow
from tests.collector.web.test_telemetry import one_in_each_state, scrape

RULES_DIRECTORY = Path(__file__).resolve().parents[2] / "packaging" / "prometheus"
RULES = RULES_DIRECTORY / "tassium-alerts.yml"
FETCHED = Path(__file__).resolve().parents[2] / ".cache" / "promtool" / "usr" / "bin" / "promtool"


def promtool() -> str | None:
    return shutil.which("promtool") or (str(FETCHED) if FETCHED.exists() else None)


def rules() -> dict[str, str]:
    """Each alert's expression, by name."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


@pytest.mark.skipif(promtool() is None, reason="no promtool (scripts/test fetches it)")
@pytest.mark.parametrize(
    "command", [["check", "rules", RULES.name], ["test", "rules", "tassium-alerts.test.yml"]]
)
def test_promtool_checks_the_rules_and_their_unit_tests(command):
    done = subprocess.run(
        [promtool(), *command], cwd=RULES_DIRECTORY, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


# The expressions the rules file may use: a series, its label matchers, a comparison with a
# number. Anything else fails this test, so the evaluator below stays the whole truth.
EXPRESSION = re.compile(r"(\w+)(?:\{([^}]*)\})?\s*(==|!=|>=|<=|>|<)\s*([0-9.]+)")
MATCHER = re.compile(r'(\w+)(=~|!=|=)"([^"]*)"')
COMPARE = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}


def firing(expression: str, samples: dict) -> list[dict]:
    """The label sets for which ``expression`` holds in a scrape, as Prometheus evaluates it."""
    found = EXPRESSION.fullmatch(expression.strip())
    assert found, f"an expression this test cannot evaluate: {expression}"
    name, matchers, op, threshold = found.groups()
    wanted = MATCHER.findall(matchers or "")
    result = []
    for (sample, labels), value in samples.items():
        labels = dict(labels)
        if sample != name:
            continue
        if all(
            (kind == "=" and labels.get(k) == v)
            or (kind == "!=" and labels.get(k) != v)
            or (kind == "=~" and re.fullmatch(v, labels.get(k, "")))
            for k, kind, v in wanted
        ) and COMPARE[op](value, float(threshold)):
            result.append(labels)
    return result


def test_every_series_a_rule_names_is_one_the_collector_exports(make_app, dbconn):
    one_in_each_state(utcnow())
    exported = {name for name, _ in scrape(make_app(metrics_per_worker=10).test_client())}
    for alert, expression in rules().items():
        name = EXPRESSION.fullmatch(expression.strip()).group(1)
        assert name in exported, f"{alert} reads {name}, which /metrics does not have"


def test_the_rules_fire_on_what_a_collector_exports(make_app, dbconn):
    now = utcnow()
    made = one_in_each_state(now)
    expressions = rules()
    samples = scrape(make_app(metrics_per_worker=10).test_client())

    assert firing(expressions["TassiumDatabaseDown"], samples) == []
    # 2 of the 5 workers heard from are down or degraded: 40 %, over the 10 % of the rule.
    assert firing(expressions["TassiumFleetNotPaid"], samples) == [{}]
    down = firing(expressions["TassiumWorkerDown"], samples)
    assert sorted((w["wallet"], w["state"]) for w in down) == sorted(
        [(made["down"][0], "down"), (made["degraded"][0], "degraded")]
    )
    assert firing(expressions["TassiumWorkerSeriesTruncated"], samples) == []

    # Everyone back: nothing fires.
    Worker.update(
        last_heartbeat_at=now - timedelta(minutes=1),
        last_seen_at=now - timedelta(minutes=1),
        last_ping_at=now,
        docker_available=True,
    ).execute()
    quiet = scrape(make_app(metrics_per_worker=10).test_client())
    assert all(firing(expression, quiet) == [] for expression in expressions.values())
