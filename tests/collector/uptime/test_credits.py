"""Credits (collector/uptime/credits.py, earned in collector/windows.apply_heartbeat): the original
per-heartbeat formula as a rate per 300 s of uptime, earned over the seconds each heartbeat
grows its window by, in thousandths rounded down per heartbeat. Hand-computed cases first,
then what makes it ungameable (beating more often earns nothing more), then traceability
(every credit is recomputed from the stored uptime and metrics points), on both databases."""

import math
import random
from datetime import timedelta

import pytest

from collector.store.models import Worker, WorkerMetric
from collector.uptime import credits
from collector.uptime.windows import StaleHeartbeat, apply_heartbeat, sweep
from protocol.heartbeat import Container, Heartbeat, System
from protocol.times import utcnow
from tests.collector.uptime.test_windows import (
    GAP,
    T0,
    US,
    create_worker,
    stored_records,
    stored_window,
)
from tests.factories import FakeWorker, machine

# 4 cores, 16 GB RAM, 200 GB of storage: 10 + 5·4 + 3·16 + 200/10 = 98, plus 15 a container.
MACHINE = {"cpuCores": 4, "ramTotalGb": 16, "storageTotalGb": 200}


def heartbeat(wallet: str, ts, system: dict | None = None, containers: int = 1) -> Heartbeat:
    return Heartbeat(
        wallet,
        ts,
        tuple(Container(f"c{i}") for i in range(containers)),
        None,
        System(**system) if system is not None else None,
    )


def apply(wallet: str, ts, system: dict | None = None, containers: int = 1):
    return apply_heartbeat(heartbeat(wallet, ts, system, containers), gap=GAP, now=ts)


def stored_credits(wallet: str) -> int:
    return Worker.get_by_id(wallet).credits_millis


# --- the formula --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "system, containers, expected",
    [
        # No machine facts: the original's flat 100, whatever runs.
        (None, 0, 100),
        (None, 3, 100),
        # 98 + 15 = 113; 3 % CPU is idle.
        ({**MACHINE, "cpuUsagePercent": 3}, 1, 113),
        # Exactly 5 % is not above 5 %.
        ({**MACHINE, "cpuUsagePercent": 5}, 1, 113),
        # Busy: 113 × 1.2 = 135.6, floored.
        ({**MACHINE, "cpuUsagePercent": 5.01}, 1, 135),
        # 98 + 45 = 143; × 1.2 = 171.6.
        ({**MACHINE, "cpuUsagePercent": 80}, 3, 171),
        # 205 GB: 10 + 20 + 48 + 20.5 = 98.5, floored to 98 idle; × 1.2 = 118.2 busy.
        ({**MACHINE, "storageTotalGb": 205}, 0, 98),
        ({**MACHINE, "storageTotalGb": 205, "cpuUsagePercent": 50}, 0, 118),
        # A fact left out counts as 0: 10 + 5·2 + 15.
        ({"cpuCores": 2}, 1, 35),
        # Fractions of GB count: 10 + 3·1.5 + 0.25 = 14.75.
        ({"ramTotalGb": 1.5, "storageTotalGb": 2.5}, 0, 14),
    ],
)
def test_the_rate_is_the_original_per_heartbeat_amount(system, containers, expected):
    assert credits.rate(heartbeat("0x" + "1" * 40, T0, system, containers)) == expected


CAPACITY = credits.Capacity(cpu_cores=4, ram_gb=16, storage_gb=200)


@pytest.mark.parametrize(
    "system, containers, capacity, max_containers, expected",
    [
        # Within its capacity: the formula as before, 98 + 15.
        (MACHINE, 1, CAPACITY, 100, 113),
        # Above it: each fact counts as the capacity's, the same 113.
        ({"cpuCores": 4096, "ramTotalGb": 1e6, "storageTotalGb": 1e6}, 1, CAPACITY, 100, 113),
        # Below it: as reported, 10 + 5·2 + 3·8 + 100/10.
        ({"cpuCores": 2, "ramTotalGb": 8, "storageTotalGb": 100}, 0, CAPACITY, 100, 54),
        # At most max_containers counted: 98 + 15·5.
        (MACHINE, 7, CAPACITY, 5, 173),
        # A fact with no capacity fixed counts as 0: 10 + 5·4 + 15.
        (MACHINE, 1, credits.Capacity(cpu_cores=4), 100, 45),
        # No facts: the flat rate still.
        (None, 3, CAPACITY, 100, 100),
    ],
)
def test_with_a_capacity_each_fact_counts_at_most_the_capacity(
    system, containers, capacity, max_containers, expected
):
    beat = heartbeat("0x" + "1" * 40, T0, system, containers)
    assert credits.rate(beat, capacity, max_containers) == expected


@pytest.mark.parametrize(
    "rate, seconds, millis",
    [
        (113, 300, 113_000),  # a whole period: the original amount
        (113, 30, 11_300),
        (135, 97, 43_650),
        (113, 1, 376),  # 376.66…, rounded down
        (113, 7, 2_636),  # 2,636.66…
        (100, 0.000001, 0),  # a microsecond earns less than a thousandth
        (100, 3600, 1_200_000),
        (0, 300, 0),
    ],
)
def test_a_rate_is_earned_in_proportion_to_the_uptime_in_thousandths(rate, seconds, millis):
    assert credits.earned_millis(rate, timedelta(seconds=seconds)) == millis


# --- earned over the window's growth ------------------------------------------------------

IDLE = {**MACHINE, "cpuUsagePercent": 3}  # 113 per 300 s with one container
SPAN = timedelta(seconds=2100)  # a common multiple of 300, 30 and 7 seconds


def beat_every(wallet: str, seconds: float, system: dict = IDLE) -> list[int]:
    """Heartbeats from T0 to T0 + SPAN, one every ``seconds``; what each earned."""
    steps = round(SPAN / timedelta(seconds=seconds))
    return [
        apply(wallet, T0 + i * timedelta(seconds=seconds), system).credits_millis
        for i in range(steps + 1)
    ]


def test_beating_every_30_s_earns_what_beating_every_300_s_earns(dbconn):
    slow, fast = create_worker(), create_worker()

    assert beat_every(slow, 300) == [0] + [113_000] * 7
    assert beat_every(fast, 30) == [0] + [11_300] * 70
    assert stored_credits(slow) == stored_credits(fast) == 7 * 113_000


def test_beating_more_often_can_only_lose_the_rounding_of_each_heartbeat(dbconn):
    slow, fast = create_worker(), create_worker()
    beat_every(slow, 300)
    earned = beat_every(fast, 7)

    # 2,636.66… a heartbeat, rounded down 300 times: 200 thousandths less, never more.
    assert earned == [0] + [2_636] * 300
    assert stored_credits(slow) - stored_credits(fast) == 200
    assert stored_credits(slow) - stored_credits(fast) < len(earned) - 1


def test_an_agent_with_jitter_earns_the_same_uptime_to_the_rounding(dbconn):
    steady, jittery = create_worker(), create_worker()
    beat_every(steady, 300)
    rng = random.Random(10)
    ts, beats = T0, 0
    while ts < T0 + SPAN:
        apply(jittery, ts, IDLE)
        beats += 1
        ts = min(ts + timedelta(seconds=rng.uniform(0.5, 400)), T0 + SPAN)
    apply(jittery, T0 + SPAN, IDLE)

    assert 0 <= stored_credits(steady) - stored_credits(jittery) < beats


def test_the_heartbeat_opening_a_window_earns_nothing(dbconn):
    wallet = create_worker()
    applied = apply(wallet, T0, machine())
    assert (applied.action, applied.credits_millis, stored_credits(wallet)) == ("opened", 0, 0)


def test_the_heartbeat_after_a_gap_flushes_and_earns_nothing_for_the_silence(dbconn):
    wallet = create_worker()
    apply(wallet, T0, IDLE)
    apply(wallet, T0 + timedelta(minutes=5), IDLE)
    applied = apply(wallet, T0 + timedelta(minutes=5) + GAP + US, IDLE)

    assert (applied.action, applied.credits_millis) == ("flushed", 0)
    assert stored_credits(wallet) == 113_000


def test_a_reopened_window_earns_the_stretch_since_the_swept_record(dbconn):
    wallet = create_worker()
    apply(wallet, T0, IDLE)
    apply(wallet, T0 + timedelta(minutes=5), IDLE)
    # The collector was out: the sweeper closed the window before the spooled heartbeat came.
    assert sweep(gap=GAP, now=T0 + timedelta(minutes=5) + GAP + US) == 1

    applied = apply(wallet, T0 + timedelta(minutes=10), IDLE)

    assert (applied.action, applied.credits_millis) == ("reopened", 113_000)
    assert stored_credits(wallet) == 2 * 113_000


def test_a_refused_heartbeat_earns_nothing_and_writes_no_point(dbconn):
    wallet = create_worker()
    apply(wallet, T0, IDLE)
    apply(wallet, T0 + timedelta(minutes=5), IDLE)
    with pytest.raises(StaleHeartbeat):
        apply(wallet, T0 + timedelta(minutes=5), IDLE)

    assert stored_credits(wallet) == 113_000
    assert WorkerMetric.select().where(WorkerMetric.worker == wallet).count() == 2


# --- what the routes say agrees -----------------------------------------------------------


def millis(value: float) -> int:
    return round(value * 1000)


def test_the_answer_the_metrics_points_and_the_worker_agree(client, history):
    worker = FakeWorker()
    worker.enroll(client)
    history.known(worker.wallet)
    start = utcnow() - timedelta(minutes=30)
    # machine() earns 135 per 300 s with one container: 43.65 per 97 s.
    answers = [
        worker.beat(client, start + i * timedelta(seconds=97), system=machine()).json
        for i in range(10)
    ]
    earned = [answer["creditsEarned"] for answer in answers]
    assert earned == [0] + [43.65] * 9

    points = client.get(f"/workers/{worker.wallet}/metrics").json["points"]
    assert [p["creditsEarned"] for p in points] == earned
    total = client.get(f"/workers/{worker.wallet}").json["credits"]
    assert millis(total) == sum(millis(e) for e in earned) == 9 * 43_650


def test_credits_are_shown_whole_when_whole(client, history):
    worker = FakeWorker()
    worker.enroll(client)
    history.known(worker.wallet)
    start = utcnow() - timedelta(minutes=10)
    worker.beat(client, start, system=machine())
    answer = worker.beat(client, start + timedelta(minutes=5), system=machine()).json
    assert answer["creditsEarned"] == 135 and isinstance(answer["creditsEarned"], int)
    assert client.get(f"/workers/{worker.wallet}").json["credits"] == 135


# --- every credit is traceable to uptime --------------------------------------------------


def original_rate(point: WorkerMetric) -> int:
    """The formula again, from what a metrics point stored (independent of credits.py)."""
    facts = (point.cpu_cores, point.cpu_usage_percent, point.ram_total_gb, point.storage_total_gb)
    if all(f is None for f in (*facts, point.ram_used_gb, point.storage_used_gb)):
        return 100
    cores, cpu, ram, storage = (f or 0 for f in facts)
    amount = 10 + 5 * cores + 3 * ram + storage / 10 + 15 * point.container_count
    return math.floor(amount * 1.2) if cpu > 5 else math.floor(amount)


def recomputed(wallet: str) -> list[int]:
    """Each point's credit from the stored uptime alone: its rate times the time since the
    previous point, when both lie in the same uptime span (a record or the open window)."""
    spans = stored_records(wallet)
    if (window := stored_window(wallet)) is not None:
        spans.append(window)
    points = (
        WorkerMetric.select()
        .where(WorkerMetric.worker == wallet)
        .order_by(WorkerMetric.timestamp, WorkerMetric.id)
    )
    earned, previous = [], None
    for point in points:
        start, _ = next(s for s in spans if s[0] <= point.timestamp <= s[1])
        same_span = previous is not None and previous.timestamp >= start
        micros = (point.timestamp - previous.timestamp) // US if same_span else 0
        earned.append(original_rate(point) * 1000 * micros // (300 * 10**6))
        previous = point
    return earned


def test_recomputing_from_uptime_and_metrics_gives_the_stored_total(dbconn):
    rng = random.Random(2026)
    wallet = create_worker()
    ts = T0
    for _ in range(150):
        roll = rng.random()
        if roll < 0.05:
            ts += GAP + timedelta(seconds=rng.uniform(1, 600))  # a silence: flushed
        elif roll < 0.10:
            # The sweeper closes the window; a late heartbeat then reopens it.
            assert sweep(gap=GAP, now=ts + GAP + US) == 1
            ts += timedelta(seconds=rng.uniform(1, GAP.total_seconds()))
        else:
            ts += timedelta(seconds=rng.choice([30, 97.5, 300, rng.uniform(0.001, 1200)]))
        system = (
            None
            if rng.random() < 0.2
            else {
                "cpuCores": rng.randint(1, 64),
                "cpuUsagePercent": rng.choice([0, 5, 5.0001, rng.uniform(0, 100)]),
                "ramTotalGb": rng.choice([None, rng.uniform(0.5, 512)]),
                "ramUsedGb": rng.uniform(0, 0.5),
                "storageTotalGb": rng.choice([None, rng.uniform(1, 4000)]),
            }
        )
        apply(wallet, ts, system, containers=rng.randint(0, 5))

    stored = [
        p.credits_millis
        for p in WorkerMetric.select()
        .where(WorkerMetric.worker == wallet)
        .order_by(WorkerMetric.timestamp, WorkerMetric.id)
    ]
    assert recomputed(wallet) == stored
    assert sum(stored) == stored_credits(wallet) > 0
    assert len(stored_records(wallet)) > 3  # the history did flush and sweep
