"""collector/uptime/capacity.py (issue 20, item 3): credits stay the original formula, but the
machine a worker is credited for is fixed when it enrolls and changes only within the
operator's bounds or by the operator; every change is a row, shown in the worker's report,
and the fleet report flags outliers. Heartbeats go signed through POST /heartbeat, or
through the window step with the bounds the collector passes it; every expected figure is
the formula written out again here. On SQLite and PostgreSQL."""

import csv
import io
import math
from dataclasses import replace
from datetime import timedelta

import pytest

from collector.config import CollectorConfig, ConfigError, load_config
from collector.store.models import CapacityChange, Worker
from collector.uptime.windows import apply_heartbeats
from protocol.heartbeat import Container, Heartbeat, System
from protocol.times import format_timestamp, utcnow
from tests.collector.uptime.test_windows import GAP, T0, create_worker
from tests.conftest import OPERATOR_TOKEN
from tests.factories import FakeWorker, machine

FIVE = timedelta(minutes=5)
# The operator's defaults: 128 cores, 1024 GB RAM, 20000 GB storage, 100 containers counted,
# no growth by itself.
BOUNDS = CollectorConfig()
# What a worker may declare within the protocol's parse limits.
INFLATED = machine(cpuCores=4096, ramTotalGb=1_000_000, storageTotalGb=1_000_000)
MANY = [{"containerName": f"c{i}"} for i in range(1000)]


def formula(cores: int, ram: float, storage: float, containers: int, busy: bool = True) -> int:
    """The original UI's credits per 300 s of uptime, written out again."""
    amount = 10 + 5 * cores + 3 * ram + storage / 10 + 15 * containers
    return math.floor(amount * 1.2) if busy else math.floor(amount)


# The most the default bounds allow per 300 s: 8,666 (2,495,808 a day, against 1,083,625,344
# for the inflated declaration credited as said).
BOUND = formula(128, 1024, 20000, 100)


@pytest.fixture
def config(database_url) -> CollectorConfig:
    # Heartbeats stamped up to an hour before now are vouched for (collector/uptime/vouching.py):
    # a test sends a worker's half hour of heartbeats at once.
    return CollectorConfig(
        database_url=database_url, sweep_interval=0, api_token=OPERATOR_TOKEN, max_skew=3600
    )


def enrolled(client) -> FakeWorker:
    worker = FakeWorker()
    assert worker.enroll(client).status_code == 201
    return worker


def beats(client, worker: FakeWorker, systems: list[dict], containers=None, start=None) -> list:
    """One signed heartbeat per system, five minutes apart from ``start`` (by default ending
    ten minutes ago); what each earned."""
    start = start or utcnow() - (len(systems) + 1) * FIVE
    earned = []
    for i, system in enumerate(systems):
        answer = worker.beat(client, start + i * FIVE, containers, system=system)
        assert answer.status_code == 200, answer.json
        earned.append(answer.json["creditsEarned"])
    return earned


def step(wallet: str, ts, system: dict | None, containers: int = 1, bounds=BOUNDS) -> int:
    """One heartbeat through the window step, as the collector applies it; what it earned."""
    beat = Heartbeat(
        wallet,
        ts,
        tuple(Container(f"c{i}") for i in range(containers)),
        None,
        System(**system) if system is not None else None,
    )
    [applied] = apply_heartbeats([(beat, None)], gap=GAP, now=ts, capacity_bounds=bounds)
    return applied.credits_millis


def changes(wallet: str) -> list[tuple]:
    query = (
        CapacityChange.select()
        .where(CapacityChange.worker == wallet)
        .order_by(CapacityChange.changed_at, CapacityChange.id)
    )
    return [(c.reason, c.cpu_cores, c.ram_gb, c.storage_gb) for c in query]


def credited(wallet: str) -> tuple:
    worker = Worker.get_by_id(wallet)
    return worker.capacity_cpu_cores, worker.capacity_ram_gb, worker.capacity_storage_gb


# --- the bound --------------------------------------------------------------------------------


def test_a_worker_declaring_4096_cores_and_a_million_gb_earns_no_more_than_the_bound(
    client, dbconn
):
    worker = enrolled(client)
    earned = beats(client, worker, [INFLATED] * 5, MANY)

    assert earned == [0] + [BOUND] * 4
    assert Worker.get_by_id(worker.wallet).credits_millis == 4 * BOUND * 1000
    # Credited as declared, the same heartbeats would have earned 434 times as much.
    assert formula(4096, 1_000_000, 1_000_000, 1000) > 434 * BOUND
    assert changes(worker.wallet) == [("clamped", 128, 1024, 20000)]


@pytest.mark.parametrize(
    "system, containers",
    [
        (machine(), 1),  # 4 cores, 16 GB, 200 GB, busy: 135 per 300 s
        (machine(cpuUsagePercent=2), 3),
        (machine(cpuCores=64, ramTotalGb=512, storageTotalGb=4000), 50),
        (machine(cpuCores=128, ramTotalGb=1024, storageTotalGb=20000), 100),  # the maximums
        (machine(ramTotalGb=15.54, storageTotalGb=233.7), 0),
        ({"cpuCores": 2}, 1),  # a fact left out counts as 0, as before
        (None, 2),  # no facts: the flat rate
    ],
)
def test_an_honest_machine_earns_exactly_what_it_earned_before(dbconn, system, containers):
    before, now = create_worker(), create_worker()
    for i in range(4):
        ts = T0 + i * FIVE
        assert step(now, ts, system, containers) == step(before, ts, system, containers, None)
    assert Worker.get_by_id(now).credits_millis == Worker.get_by_id(before).credits_millis > 0


# --- changes ----------------------------------------------------------------------------------


def test_a_later_inflated_heartbeat_changes_nothing_until_the_operator_approves(
    client, dbconn, runner, operator
):
    worker = enrolled(client)
    bigger = machine(cpuCores=64, ramTotalGb=256)
    start = utcnow() - 6 * FIVE
    earned = beats(client, worker, [machine(), machine(), bigger, bigger], start=start)
    assert earned == [0, 135, 135, 135]
    assert credited(worker.wallet) == (4, 16, 200)
    assert changes(worker.wallet) == [("enrolled", 4, 16, 200)]
    row = operator.get("/reports/fleet", query_string={"period": "24h"}).json["items"][0]
    assert row["flags"] == ["capacity_pending"]

    approved = runner("capacity", "approve", "--wallet", worker.wallet)
    assert approved.exit_code == 0, approved.output
    assert approved.output == "approved: 64 cores, 256 GB RAM, 200 GB storage\n"

    answer = worker.beat(client, start + 4 * FIVE, system=bigger).json
    assert answer["creditsEarned"] == formula(64, 256, 200, 1)
    assert changes(worker.wallet) == [("enrolled", 4, 16, 200), ("approved", 64, 256, 200)]


def test_approving_stays_within_the_maximums_unless_forced(client, dbconn, runner):
    worker = enrolled(client)
    beats(client, worker, [machine(), machine(cpuCores=512)])
    assert "approved: 128 cores" in runner("capacity", "approve", "--wallet", worker.wallet).output
    forced = runner("capacity", "approve", "--wallet", worker.wallet, "--force")
    assert "approved: 512 cores" in forced.output
    assert [c[:2] for c in changes(worker.wallet)] == [
        ("enrolled", 4),
        ("approved", 128),
        ("approved", 512),
    ]


def test_a_decrease_applies_at_once_and_the_enrolled_capacity_comes_back(dbconn):
    wallet = create_worker()
    earned = [
        step(wallet, T0, machine()),
        step(wallet, T0 + FIVE, machine(ramTotalGb=8)),  # a RAM module failed
        step(wallet, T0 + 2 * FIVE, machine()),  # replaced: the enrolled capacity again
        step(wallet, T0 + 3 * FIVE, machine(ramTotalGb=32)),  # more than enrolled: waits
    ]
    assert earned == [0, formula(4, 8, 200, 1) * 1000] + [formula(4, 16, 200, 1) * 1000] * 2
    assert changes(wallet) == [
        ("enrolled", 4, 16, 200),
        ("decreased", 4, 8, 200),
        ("grown", 4, 16, 200),
    ]


def test_growth_by_itself_stays_within_the_operators_fraction_of_the_enrolled_capacity(dbconn):
    bounds = replace(BOUNDS, capacity_growth=0.25)
    wallet = create_worker()
    step(wallet, T0, machine(), bounds=bounds)
    grown = step(wallet, T0 + FIVE, machine(cpuCores=8, storageTotalGb=400), bounds=bounds)
    # 4 cores + 25 % is 5; 200 GB + 25 % is 250: measured from the enrolled capacity, so a
    # second step up grows nothing more.
    assert grown == formula(5, 16, 250, 1) * 1000
    again = step(wallet, T0 + 2 * FIVE, machine(cpuCores=16, storageTotalGb=800), bounds=bounds)
    assert again == grown
    assert changes(wallet) == [("enrolled", 4, 16, 200), ("grown", 5, 16, 250)]


def test_growth_never_passes_the_maximums(dbconn):
    bounds = replace(BOUNDS, capacity_growth=10)
    wallet = create_worker()
    step(wallet, T0, machine(cpuCores=100), bounds=bounds)
    step(wallet, T0 + FIVE, machine(cpuCores=4096), bounds=bounds)
    assert credited(wallet) == (128, 16, 200)


def test_a_fact_first_reported_later_is_fixed_then_within_the_maximums(dbconn):
    wallet = create_worker()
    step(wallet, T0, {"cpuCores": 4})
    step(wallet, T0 + FIVE, {"cpuCores": 4, "ramTotalGb": 4096})
    assert changes(wallet) == [("enrolled", 4, None, None), ("clamped", 4, 1024, None)]


def test_a_worker_enrolled_again_fixes_its_capacity_from_its_next_heartbeat(client, dbconn, runner):
    worker = enrolled(client)
    beats(client, worker, [machine(), machine(cpuCores=8)])
    token = runner("token", "create", "--wallet", worker.wallet).stdout.strip()
    replacement = FakeWorker(worker.wallet)  # the same wallet, a new machine and key
    assert replacement.enroll(client, token).json["enrollment"] == "replaced"

    answer = replacement.beat(client, utcnow() - timedelta(minutes=1), system=machine(cpuCores=8))
    assert answer.status_code == 200
    assert credited(worker.wallet) == (8, 16, 200)
    assert [c[:2] for c in changes(worker.wallet)] == [("enrolled", 4), ("enrolled", 8)]


def test_the_operator_sets_a_capacity_above_the_maximums_only_by_force(client, dbconn, runner):
    worker = enrolled(client)
    beats(client, worker, [machine()])
    refused = runner("capacity", "set", "--wallet", worker.wallet, "--cpu", "256")
    assert refused.exit_code == 1
    assert "cpu cores 256 is above the maximum 128" in refused.output
    done = runner("capacity", "set", "--wallet", worker.wallet, "--cpu", "256", "--force")
    assert done.output == "set: 256 cores, 16 GB RAM, 200 GB storage\n"
    assert changes(worker.wallet)[-1] == ("set", 256, 16, 200)

    shown = runner("capacity", "show", "--wallet", worker.wallet).output.splitlines()
    assert shown[:3] == [
        "credited: 256 cores, 16 GB RAM, 200 GB storage",
        "reported: 4 cores, 16 GB RAM, 200 GB storage",
        "flags: capacity_at_maximum",
    ]
    assert shown[3].endswith("enrolled: 4 cores, 16 GB RAM, 200 GB storage")
    assert shown[4].endswith("set: 256 cores, 16 GB RAM, 200 GB storage")


def test_the_commands_refuse_an_unknown_worker_or_nothing_to_set(dbconn, runner):
    stranger = FakeWorker().wallet
    assert "no worker" in runner("capacity", "approve", "--wallet", stranger).output
    assert "at least one of" in runner("capacity", "set", "--wallet", stranger).output


def test_the_bounds_are_checked_with_the_configuration():
    with pytest.raises(ConfigError) as problem:
        load_config(
            environ={"TASSIUM_CAPACITY_GROWTH": "-0.5", "TASSIUM_CAPACITY_MAX_CPU_CORES": "0"}
        )
    assert "TASSIUM_CAPACITY_GROWTH: must be a fraction, from 0 to 10" in str(problem.value)
    assert "TASSIUM_CAPACITY_MAX_CPU_CORES: must be cores, from 1 to 4096" in str(problem.value)


# --- the reports ------------------------------------------------------------------------------


def test_every_change_appears_in_the_workers_report(client, dbconn, operator):
    worker = enrolled(client)
    beats(client, worker, [machine(), machine(ramTotalGb=8), machine(ramTotalGb=64)])

    report = operator.get(f"/reports/workers/{worker.wallet}", query_string={"period": "24h"}).json
    # 8 GB at once; 64 GB back up to the 16 GB enrolled only (the rest awaits approval).
    assert report["capacity"] == {"cpuCores": 4, "ramGb": 16, "storageGb": 200}
    assert report["flags"] == ["capacity_pending"]
    assert report["capacityChangeCount"] == 3
    stored = CapacityChange.select().where(CapacityChange.worker == worker.wallet)
    assert report["capacityChanges"] == [
        {
            "at": format_timestamp(c.changed_at),
            "cpuCores": c.cpu_cores,
            "ramGb": c.ram_gb,
            "storageGb": c.storage_gb,
            "reason": c.reason,
        }
        for c in stored.order_by(CapacityChange.changed_at, CapacityChange.id)
    ]
    reasons = [c["reason"] for c in report["capacityChanges"]]
    assert reasons == ["enrolled", "decreased", "grown"]


def test_the_fleet_report_flags_the_outlier(client, dbconn, operator):
    honest = [enrolled(client) for _ in range(3)]
    for worker in honest:
        beats(client, worker, [machine()] * 5)
    inflated, waiting = enrolled(client), enrolled(client)
    beats(client, inflated, [INFLATED] * 5, MANY)
    beats(client, waiting, [machine()] * 3 + [machine(cpuCores=32)] * 2)

    rows = operator.get("/reports/fleet", query_string={"period": "24h"}).json["items"]
    flags = {row["walletAddress"]: row["flags"] for row in rows}
    # It still says it has 4,096 cores: more than it is credited for.
    assert flags[inflated.wallet] == ["capacity_at_maximum", "capacity_pending", "credits_outlier"]
    assert flags[waiting.wallet] == ["capacity_pending"]
    assert [flags[w.wallet] for w in honest] == [[], [], []]

    answer = operator.get("/reports/fleet.csv", query_string={"period": "24h"})
    shown = {r["walletAddress"]: r["flags"] for r in csv.DictReader(io.StringIO(answer.text))}
    assert shown[inflated.wallet] == "capacity_at_maximum;capacity_pending;credits_outlier"
    assert shown[waiting.wallet] == "capacity_pending"
    assert shown[honest[0].wallet] == ""
