"""The agent daemon end to end: real processes (``tassium-agent run``, ``tassium-collector
serve``), a real Docker engine, and a collector that goes away and comes back."""

import os
import signal
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from protocol.times import parse_timestamp, utcnow
from tests.conftest import free_port
from tests.polling import wait_for

# Seconds of silence after which the collector closes a window: long enough that a loaded
# machine delaying a live heartbeat (a collector starting, a retry) does not split a window.
GAP = 6


def wait_until_every_spooled_heartbeat_is_accepted(agent, collector, spooled: list) -> None:
    """The agent's spool drains into ``collector``: the spooled heartbeats and at least two
    new ones arrive, and every one is accepted (a 409 would mean one was lost as a duplicate)."""
    wait_for(
        lambda: not agent.spooled() and len(collector.heartbeat_statuses()) >= len(spooled) + 2,
        lambda: explain(agent, collector),
    )
    assert set(collector.heartbeat_statuses()) == {200}, explain(agent, collector)
    assert "dropping it" not in agent.output()


def get(collector, path: str) -> dict:
    response = httpx.get(collector.url + path, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def explain(agent, *collectors) -> str:
    logs = "\n".join(f"--- {c.log.name}\n{c.log.read_text()}" for c in collectors)
    return f"{agent.output()}\n{logs}"


def spooled_times(agent) -> list:
    return [parse_timestamp(body["timestamp"]) for body in agent.spooled()]


# --- containers ------------------------------------------------------------------------------


@pytest.fixture
def worker(serve_collector, agent_process, dockerd):
    """A collector and an agent daemon beating every second against the test Docker engine."""
    collector = serve_collector()
    agent = agent_process(collector.url, interval=1, docker_host=dockerd.host)
    return collector, agent


def listed(collector, agent, names: set[str]) -> dict[str, dict]:
    """The collector's current containers of this worker, among ``names``, by name."""
    containers = get(collector, f"/workers/{agent.wallet}/containers")["containers"]
    return {c["containerName"]: c for c in containers if c["containerName"] in names}


def test_the_collector_lists_the_workers_containers_as_docker_ps_shows_them(worker, run_container):
    collector, agent = worker
    suffix = uuid.uuid4().hex[:10]
    web = run_container(
        "httpd",
        "-f",
        "-p",
        "80",
        name=f"web-{suffix}",
        ports={"80/tcp": ("127.0.0.1", None)},
        healthcheck={"test": ["CMD", "busybox", "true"], "interval": 300_000_000, "retries": 1},
    )
    broken = run_container(
        "sleep",
        "300",
        name=f"broken-{suffix}",
        healthcheck={"test": ["CMD", "busybox", "false"], "interval": 300_000_000, "retries": 1},
    )
    plain = run_container("sleep", "300", name=f"plain-{suffix}")
    web.reload()
    host_port = web.ports["80/tcp"][0]["HostPort"]
    expected = {
        web.name: {
            "port": f"127.0.0.1:{host_port}->80/tcp",
            "state": "running",
            "health": "healthy",
        },
        broken.name: {"port": "", "state": "running", "health": "unhealthy"},
        plain.name: {"port": "", "state": "running", "health": None},
    }

    def reported():
        seen = listed(collector, agent, set(expected))
        shown = {
            name: {key: c[key] for key in ("port", "state", "health")} for name, c in seen.items()
        }
        return shown if shown == expected else None

    wait_for(reported, lambda: f"{listed(collector, agent, set(expected))}\n{explain(agent)}")
    containers = listed(collector, agent, set(expected))
    assert containers[web.name]["id"] == web.id
    assert containers[web.name]["image"] == "local/busybox"


def test_stopping_a_container_changes_the_list_on_a_later_heartbeat(worker, run_container):
    collector, agent = worker
    suffix = uuid.uuid4().hex[:10]
    kept = run_container("sleep", "300", name=f"kept-{suffix}")
    stopped = run_container("sleep", "300", name=f"stopped-{suffix}")
    removed = run_container("sleep", "300", name=f"removed-{suffix}")
    names = {kept.name, stopped.name, removed.name}

    def states():
        return {name: c["state"] for name, c in listed(collector, agent, names).items()}

    everything_running = dict.fromkeys(names, "running")
    wait_for(lambda: states() == everything_running, lambda: f"{states()}\n{explain(agent)}")

    stopped.stop(timeout=0)
    removed.remove(force=True)
    after = {kept.name: "running", stopped.name: "exited"}
    wait_for(lambda: states() == after, lambda: f"{states()}\n{explain(agent)}")


# --- collector outages -----------------------------------------------------------------------


def uptime(collector, agent) -> dict:
    return get(collector, f"/workers/{agent.wallet}/uptime")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spool_max", "windows"),
    [
        pytest.param(2000, 1, id="the-spool-carries-the-outage"),
        pytest.param(1, 2, id="a-spool-of-one-cannot"),
    ],
)
def test_the_spool_closes_the_gap_of_a_collector_outage_longer_than_the_gap(
    serve_collector, agent_process, dockerd, spool_max, windows
):
    port = free_port()
    collector = serve_collector(port=port, gap=GAP, sweep_interval=1)
    agent = agent_process(
        collector.url,
        interval=1,
        retry_base=0.5,
        retry_max=1.0,
        spool_max=spool_max,
        docker_host=dockerd.host,
    )
    first = wait_for(
        lambda: uptime(collector, agent)["openWindow"], lambda: explain(agent, collector)
    )["startTime"]
    wait_for(lambda: len(collector.heartbeat_statuses()) >= 2, lambda: explain(agent, collector))

    # The outage: longer than the gap, measured by the heartbeats the agent spools meanwhile.
    collector.stop()
    stopped_at = utcnow()
    wait_for(
        lambda: (
            (times := spooled_times(agent))
            and times[-1] > stopped_at + timedelta(seconds=GAP + 0.5)
        ),
        lambda: explain(agent, collector),
    )
    # While the agent still cannot reach it, a collector on the same database (as behind a
    # network outage) lets its sweeper close the silent window.
    sweeping = serve_collector(gap=GAP, sweep_interval=1)
    wait_for(
        lambda: uptime(sweeping, agent)["openWindow"] is None,
        lambda: f"{uptime(sweeping, agent)}\n{explain(agent, sweeping)}",
    )
    assert [r["timeFrom"] for r in uptime(sweeping, agent)["records"]] == [first]

    pending = agent.spooled()
    assert 0 < len(pending) <= spool_max
    restarted = serve_collector(port=port, gap=GAP, sweep_interval=1)
    wait_until_every_spooled_heartbeat_is_accepted(agent, restarted, pending)
    report = uptime(restarted, agent)
    spans = [(r["timeFrom"], r["timeTo"]) for r in report["records"]]
    spans.append((report["openWindow"]["startTime"], report["openWindow"]["endTime"]))
    assert len(spans) == windows, report
    assert spans[0][0] == first, report
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert parse_timestamp(start) - parse_timestamp(end) > timedelta(seconds=GAP), report
    newest_spooled = max(parse_timestamp(body["timestamp"]) for body in pending)
    assert parse_timestamp(spans[-1][1]) > newest_spooled, report


@pytest.mark.slow
def test_heartbeats_spooled_before_a_kill_9_are_delivered_by_the_next_agent(
    serve_collector, agent_process, dockerd
):
    port = free_port()
    # Windows close after 10 s of silence: far longer than replacing the agent takes.
    settings = {"port": port, "gap": 10, "sweep_interval": 1}
    collector = serve_collector(**settings)
    agent = agent_process(collector.url, start=False, interval=1, docker_host=dockerd.host)
    collector.stop()

    daemon = agent.start()
    wait_for(lambda: len(agent.spooled()) >= 4, lambda: explain(agent, collector))
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(timeout=15)
    before_kill = agent.spooled()
    assert len(before_kill) >= 4

    agent.start()
    restarted = serve_collector(**settings)
    wait_until_every_spooled_heartbeat_is_accepted(agent, restarted, before_kill)
    report = uptime(restarted, agent)
    assert report["records"] == [], report
    assert report["openWindow"]["startTime"] == before_kill[0]["timestamp"], report


# --- the worker owners' client -----------------------------------------------------------------


# The dialect's reads are replayed on both databases in test_ui_v1; here the agent is the point.
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_real_agent_feeds_the_worker_clients_four_reads(
    serve_collector, agent_process, dockerd, run_container
):
    """What the worker client polls (/api/v1: the worker, its containers, its status, its
    metrics), fed by the real agent reading a real Docker engine."""
    collector = serve_collector(wallet_format="stellar", ping_interval=5)
    suffix = uuid.uuid4().hex[:10]
    busy = run_container("sh", "-c", "while :; do :; done", name=f"busy-{suffix}")
    idle = run_container("sleep", "300", name=f"idle-{suffix}")
    agent = agent_process(
        collector.url,
        interval=2,
        ping_interval=1,
        docker_host=dockerd.host,
        wallet_format="stellar",  # its owner signs with a Stellar wallet
    )
    wallet = agent.wallet
    v1 = f"/api/v1/workers/{wallet}"

    def measured():
        containers = {c["name"]: c for c in get(collector, f"{v1}/containers")}
        if busy.name not in containers or containers[busy.name].get("cpuPercent") is None:
            return None
        return containers

    containers = wait_for(measured, lambda: explain(agent, collector), timeout=60)
    assert containers[busy.name]["cpuPercent"] > 10  # a busy loop on one core
    assert containers[idle.name]["cpuPercent"] < 5
    assert containers[busy.name]["memUsageMb"] > 0

    shown = get(collector, v1)
    assert shown["exists"] is True and shown["isActive"] is True
    assert shown["cpuCores"] == os.cpu_count()
    meminfo = Path("/proc/meminfo").read_text().split()
    ram_total_gb = int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20
    assert abs(shown["ramTotalGb"] - ram_total_gb) < 0.02
    assert shown["storageTotalGb"] > 0
    assert shown["credits"] > 0 and shown["status"] == "HEALTHY"

    status = get(collector, f"{v1}/status")
    assert status["status"] == "HEALTHY"
    assert '"POST /heartbeat/ping HTTP/1.1" 200' in collector.log.read_text()
    assert utcnow() - parse_timestamp(status["lastPing"]) < timedelta(seconds=10)

    agent.stop()  # so that the points and the total below are read at rest
    points = get(collector, f"{v1}/metrics?hours=1")
    assert len(points) >= 2
    assert [p["timestamp"] for p in points] == sorted(p["timestamp"] for p in points)
    latest = points[-1]
    assert 0 <= latest["cpuUsagePercent"] <= 100 and latest["containerCount"] >= 2
    assert latest["ramTotalGb"] == get(collector, v1)["ramTotalGb"] and latest["ramUsedGb"] > 0
    earned = sum(round(p["creditsEarned"] * 1000) for p in points)
    assert earned == round(get(collector, v1)["credits"] * 1000)
