"""collector/uptime/liveness.py: each serving process records that it is alive, so that a stopped
collector shows in the reports as the collector's outage, not the workers' downtime. The
arithmetic of outages is in test_reports.py; here the thread and a real stop and restart."""

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from collector.store.models import CollectorRun
from collector.uptime.liveness import LivenessThread, outages
from protocol.times import format_timestamp, utcnow
from tests.factories import connected, new_wallet

T0 = datetime(2026, 11, 24, tzinfo=UTC)


def test_a_process_records_its_run_then_moves_it_forward(dbconn):
    times = iter([T0, T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)])
    thread = LivenessThread(interval=timedelta(seconds=10), clock=lambda: next(times))
    for _ in range(3):
        thread.beat()
    (run,) = CollectorRun.select()
    assert (run.started_at, run.alive_at) == (T0, T0 + timedelta(seconds=20))
    assert run.id == thread.run_id


def _beat(url: str, wallet: str) -> datetime:
    ts = utcnow()
    body = {"walletAddress": wallet, "timestamp": format_timestamp(ts), "containers": []}
    assert httpx.post(url + "/heartbeat", json=body, timeout=10).status_code == 200
    return ts


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_stopped_collector_is_the_collectors_outage_in_the_report(serve_collector, database_url):
    settings = {"liveness_interval": 1, "gap": 1, "require_signatures": False, "min_interval": 0}
    first = serve_collector(**settings)
    wallet = new_wallet()
    before = _beat(first.url, wallet)
    time.sleep(1.5)  # a beat of each process after its first
    first.crash()  # nothing said goodbye
    time.sleep(4)
    second = serve_collector(**settings)
    after = _beat(second.url, wallet)

    with connected(database_url):
        found = outages(before, after, interval=timedelta(seconds=1), now=utcnow())
    assert len(found) == 1
    down_from, down_to = found[0]
    assert before < down_from < down_to < after
    assert down_to - down_from >= timedelta(seconds=2)

    period = f"{format_timestamp(before)}/{format_timestamp(after)}"
    report = httpx.get(
        f"{second.url}/reports/workers/{wallet}",
        params={"period": period},
        headers=second.operator,
        timeout=10,
    ).json()
    causes = [(piece["cause"], piece["from"], piece["to"]) for piece in report["downtime"]]
    assert ("collector_down", format_timestamp(down_from), format_timestamp(down_to)) in causes
    assert {cause for cause, _, _ in causes} <= {"collector_down", "agent_silent"}
