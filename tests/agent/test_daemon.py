"""The agent as real processes in the worker's worst hour: a collector that hangs, a backlog
under a short systemd watchdog, a full disk, a wrong clock, a worker that is not enrolled."""

import glob
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from agent.service import STOP_SECONDS
from agent.spool import Spool
from protocol.heartbeat import Heartbeat
from protocol.times import parse_timestamp, utcnow
from tests.agent.fake_collector import FakeCollector, Reply, accept_everything, collector_json
from tests.agent.fake_engine import FakeEngine
from tests.polling import wait_for

# The served collectors here run on SQLite; the fake ones have no database at all.
# Each test waits on a hang, a replay or a daemon's ticks by design: slow.
pytestmark = [
    pytest.mark.parametrize("backend", ["sqlite"], indirect=True),
    pytest.mark.usefixtures("backend"),
    pytest.mark.slow,
]


@pytest.fixture
def no_docker(tmp_path) -> dict:
    """Settings that point the agent at no Docker engine: these tests are about delivery."""
    return {"docker_host": f"unix://{tmp_path}/no-docker.sock", "docker_timeout": 1}


def spool_backlog(agent, count: int, start: timedelta) -> list[str]:
    """``count`` heartbeats of the agent's wallet, one a second from ``start`` ago, written
    to its spool as an outage would leave them; returns their timestamps."""
    spool = Spool(agent.spool_path, max_entries=100_000)
    first = utcnow() - start
    bodies = [Heartbeat(agent.wallet, first + timedelta(seconds=i)).to_body() for i in range(count)]
    for body in bodies:
        spool.append(body)
    return [json.loads(body)["timestamp"] for body in bodies]


def worker_seen(collector, agent) -> dict:
    response = httpx.get(f"{collector.url}/workers/{agent.wallet}", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


# --- a collector that hangs --------------------------------------------------------------------


def test_a_collector_trickling_its_answers_never_delays_a_heartbeat(agent_process, no_docker):
    trickle = Reply(200, body=b'{"accepted": true, "pad": "' + b"x" * 200 + b'"}', trickle=1.0)

    def answer(request):
        return trickle if request.path.startswith("/heartbeat") else accept_everything(request)

    with FakeCollector(answer) as collector:
        agent = agent_process(
            collector.url,
            start=False,
            enroll=False,
            interval=1,
            jitter=0,
            send_timeout=2,
            **no_docker,
        )
        agent.start()
        wait_for(lambda: len(agent.spooled()) >= 8, agent.output, timeout=60)
    times = [parse_timestamp(body["timestamp"]) for body in agent.spooled()]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) < 2.5, f"a tick was late: gaps {gaps}\n{agent.output()}"
    assert "maximum number of running instances" not in agent.output()
    assert "no whole answer within 2 s" in agent.output()


# --- a backlog under the watchdog ---------------------------------------------------------------


def test_a_2000_heartbeat_backlog_is_delivered_under_a_short_watchdog(
    agent_process, no_docker, tmp_path
):
    slow = lambda request: Reply(**{**accept_everything(request).__dict__, "delay": 0.15})  # noqa: E731
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(0.2)
    with FakeCollector(slow) as collector:
        agent = agent_process(
            collector.url,
            start=False,
            enroll=False,
            interval=60,
            batch_size=50,
            spool_max=5000,
            **no_docker,
        )
        backlog = spool_backlog(agent, 2000, start=timedelta(hours=2))
        process = agent.start(
            env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "2000000"}
        )
        pings: list[float] = []
        deadline = time.monotonic() + 120
        while len(collector.heartbeats()) < 2001 and time.monotonic() < deadline:
            try:
                if notify.recv(4096) == b"WATCHDOG=1":
                    pings.append(time.monotonic())
            except TimeoutError:
                pass
            assert process.poll() is None, agent.output()
        notify.close()
        received = [body["timestamp"] for body in collector.heartbeats()]
    assert received[:2000] == backlog, agent.output()
    # The last entry leaves the spool once its answer is read, just after the collector sent it.
    wait_for(lambda: not agent.spooled(), agent.output)
    replay = [r for r in collector.requests if r.path == "/heartbeats"]
    assert len(replay) == 40  # 2,000 in batches of 50, ~6 s at 0.15 s each
    # systemd would kill an agent silent for the 2 s watchdog period; it pings every second.
    gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
    assert len(pings) >= 4 and max(gaps) < 2.0, f"pings {gaps}\n{agent.output()}"


# --- pings ---------------------------------------------------------------------------------------


def test_pings_keep_their_interval_while_docker_hangs_and_a_heartbeat_is_held(agent_process):
    """The live status must not depend on the heavy half: while every Docker call hangs to
    its timeout and the collector holds the first heartbeat's answer, a ping still arrives
    every second."""
    directory = Path(tempfile.mkdtemp(prefix="tassium-fake-", dir="/tmp"))  # a short socket path
    engine = FakeEngine(directory / "docker.sock").start()
    engine.hang()
    pings: list[float] = []
    heartbeats: list[float] = []

    def answer(request):
        if request.path == "/heartbeat/ping":
            pings.append(time.monotonic())
            return collector_json(accepted=True)
        if request.path in ("/heartbeat", "/heartbeats"):
            heartbeats.append(time.monotonic())
            return Reply(body=b'{"accepted": true}', delay=4)
        return accept_everything(request)

    try:
        with FakeCollector(answer) as collector:
            agent = agent_process(
                collector.url,
                enroll=False,
                interval=1,
                jitter=0,
                ping_interval=1,
                docker_host=engine.host,
                docker_timeout=2,
            )
            # The first heartbeat waited out Docker's timeout; its answer is held 4 s.
            wait_for(lambda: heartbeats and time.monotonic() > heartbeats[0] + 3.5, agent.output)
            held = [t for t in pings if t < heartbeats[0] + 3.5]
    finally:
        engine.stop()
        shutil.rmtree(directory, ignore_errors=True)
    gaps = [round(b - a, 2) for a, b in zip(held, held[1:], strict=False)]
    assert len(held) >= 5 and max(gaps) < 2.0, f"pings {gaps}\n{agent.output()}"
    assert "dockerAvailable=false" in agent.output()


# --- a full disk --------------------------------------------------------------------------------


def full_disk(spool_path: Path) -> tuple[str, ...]:
    """A command prefix that runs the agent with its spool on a tiny file system filled up
    (a private mount namespace: nothing outside the test sees it)."""
    if not shutil.which("unshare") or os.geteuid() != 0:
        pytest.fail("the full-disk tests need unshare (util-linux) and root")
    spool_path.mkdir(parents=True, exist_ok=True)
    script = (
        'mount -t tmpfs -o size=64k tmpfs "$0" && '
        '(head -c 1M /dev/zero > "$0/filler" 2>/dev/null; true) && exec "$@"'
    )
    return ("unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(spool_path))


def delivered_without_docker(done) -> bool:
    """``once`` delivered its heartbeat, which said Docker is unavailable (no engine here):
    taken, counted as downtime, and so a failure with its sentence."""
    assert done.returncode == 1, done.stdout + done.stderr
    assert "this heartbeat was counted as downtime" in done.stderr, done.stderr
    return True


def test_once_sends_directly_when_the_spool_cannot_be_written(
    serve_collector, agent_process, no_docker
):
    collector = serve_collector()
    agent = agent_process(collector.url, start=False, **no_docker)
    done = agent.command("once", prefix=full_disk(agent.spool_path))
    assert delivered_without_docker(done)
    assert "cannot write the spool" in done.stderr and "Traceback" not in done.stderr
    assert collector.heartbeat_statuses() == [200]
    sent = json.loads(done.stdout)
    assert worker_seen(collector, agent)["lastHeartbeat"] == sent["timestamp"]


def test_the_daemon_keeps_beating_with_a_full_disk_and_says_so_once(
    serve_collector, agent_process, no_docker
):
    collector = serve_collector()
    agent = agent_process(collector.url, start=False, interval=1, **no_docker)
    agent.start(prefix=full_disk(agent.spool_path))
    wait_for(lambda: len(collector.heartbeat_statuses()) >= 4, agent.output)
    assert set(collector.heartbeat_statuses()) == {200}
    assert agent.output().count("cannot write the spool") == 1, agent.output()
    assert "Traceback" not in agent.output()


# --- status and once tell the truth -------------------------------------------------------------


def test_status_and_once_fail_for_a_worker_the_collector_does_not_know(
    serve_collector, agent_process, no_docker
):
    with FakeCollector() as enrolled_there:
        agent = agent_process(enrolled_there.url, start=False, enroll=False, **no_docker)
    collector = serve_collector()
    agent.config.write_text(agent.config.read_text().replace(enrolled_there.url, collector.url))

    status = agent.command("status")
    assert status.returncode == 1
    assert any(
        line.startswith("BAD enrolled") and "run tassium-agent enroll" in line
        for line in status.stdout.splitlines()
    ), status.stdout
    once = agent.command("once")
    assert once.returncode == 1 and "not credited" in once.stderr, once.stderr


def test_status_fails_for_a_wallet_enrolled_with_another_key(
    serve_collector, agent_process, no_docker
):
    collector = serve_collector()
    agent = agent_process(collector.url, start=False, **no_docker)
    (agent.state_dir / "agent.key").unlink()  # the owner lost the key and made a new one
    assert agent.command("keygen").returncode == 0
    status = agent.command("status")
    assert status.returncode == 1
    enrolled = [line for line in status.stdout.splitlines() if line[4:].startswith("enrolled")]
    assert enrolled and enrolled[0].startswith("BAD") and "another key" in enrolled[0]


def test_once_replays_a_backlog_in_batches_and_every_heartbeat_is_credited(
    serve_collector, agent_process, no_docker, history
):
    # The backlog of an agent that could not reach a collector down since before it.
    collector = serve_collector()
    agent = agent_process(collector.url, start=False, batch_size=100, **no_docker)
    history.known(agent.wallet)
    backlog = spool_backlog(agent, 250, start=timedelta(minutes=10))
    done = agent.command("once")
    assert delivered_without_docker(done)
    assert "credited 251, refused 0, still waiting 0" in done.stderr
    # The backlog built one window; the live heartbeat of `once` then said Docker was down
    # (there is no engine here), which is downtime: it closed that window into a record.
    uptime = httpx.get(f"{collector.url}/workers/{agent.wallet}/uptime", timeout=10).json()
    assert (uptime["openWindow"], len(uptime["records"])) == (None, 1)
    assert uptime["records"][0] == {"timeFrom": backlog[0], "timeTo": backlog[-1]}
    log = collector.log.read_text()
    assert log.count("POST /heartbeats ") == 3 and log.count("POST /heartbeat ") == 0


def test_status_changes_nothing_on_disk(serve_collector, agent_process, dockerd):
    collector = serve_collector()
    agent = agent_process(collector.url, start=False, docker_host=dockerd.host)
    agent.spool_path.mkdir()
    in_flight = agent.spool_path / f".tmp-{os.getpid()}-000000000001"  # the daemon's write
    in_flight.write_bytes(b'{"half')
    old = time.time() - 3600
    os.utime(in_flight, (old, old))
    before = sorted(p.relative_to(agent.state_dir) for p in agent.state_dir.rglob("*"))
    status = agent.command("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "ok  enrolled" in status.stdout
    assert sorted(p.relative_to(agent.state_dir) for p in agent.state_dir.rglob("*")) == before


# --- a wrong clock ------------------------------------------------------------------------------


def faketime(offset: str) -> dict[str, str]:
    """Environment that runs a program with its clock moved by ``offset`` (libfaketime)."""
    found = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    if not found:
        pytest.fail("the clock tests need libfaketime (apt-get install faketime)")
    # The steady clock stays real, as a machine's does when its wall clock is wrong.
    return {"LD_PRELOAD": found[0], "FAKETIME": offset, "DONT_FAKE_MONOTONIC": "1"}


@pytest.mark.parametrize("offset", ["+5m", "-1h"])
def test_a_wrong_clock_costs_no_uptime_and_status_shows_it(
    serve_collector, agent_process, no_docker, offset
):
    collector = serve_collector()
    agent = agent_process(collector.url, start=False, **no_docker)
    assert delivered_without_docker(agent.command("once"))  # stamped on the right time
    wrong = faketime(offset)

    done = agent.command("once", env=wrong)
    assert delivered_without_docker(done)
    stamped = parse_timestamp(json.loads(done.stdout)["timestamp"])
    assert abs((stamped - utcnow()).total_seconds()) < 10
    assert collector.heartbeat_statuses() == [200, 200]

    status = agent.command("status", env=wrong)
    clock = [line for line in status.stdout.splitlines() if "clock" in line.split()[:2]]
    assert clock and clock[0].startswith("BAD"), status.stdout
    assert ("ahead of" if offset.startswith("+") else "behind") in clock[0]
    assert status.returncode == 1


def test_a_clock_set_back_under_the_running_daemon_changes_nothing(
    serve_collector, agent_process, no_docker, tmp_path
):
    collector = serve_collector()
    agent = agent_process(collector.url, start=False, interval=1, **no_docker)
    found = faketime("+0")
    step = tmp_path / "faketime"
    step.write_text("+0\n")
    env = {
        "LD_PRELOAD": found["LD_PRELOAD"],
        "DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_TIMESTAMP_FILE": str(step),
        "FAKETIME_NO_CACHE": "1",
    }
    agent.start(env=env)
    wait_for(lambda: len(collector.heartbeat_statuses()) >= 2, agent.output)
    step.write_text("-1h\n")  # the owner sets the clock back an hour
    count = len(collector.heartbeat_statuses())
    wait_for(lambda: len(collector.heartbeat_statuses()) >= count + 3, agent.output)
    assert set(collector.heartbeat_statuses()) == {200}, agent.output()
    # APScheduler reads the wall clock: the step is noticed within 5 s and every job put back
    # on the grid it had on the steady clock, so the ticks went on within that delay.
    wait_for(lambda: "clock was set back by 3600 s" in agent.output(), agent.output)
    seen = parse_timestamp(worker_seen(collector, agent)["lastHeartbeat"])
    assert abs((seen - utcnow()).total_seconds()) < 10
    agent.processes[0].send_signal(signal.SIGTERM)
    assert agent.processes[0].wait(timeout=30) == 0, agent.output()


# --- a stop in bounded time ---------------------------------------------------------------------


def test_a_stop_waits_for_a_held_delivery_only_so_long(agent_process, no_docker):
    """SIGTERM while the collector holds a heartbeat's answer far longer than the stop may
    take: the agent gives the delivery STOP_SECONDS, then exits anyway, the heartbeat spooled."""
    held = threading.Event()

    def answer(request):
        if request.path in ("/heartbeat", "/heartbeats"):
            held.set()
            return Reply(body=b'{"accepted": true}', delay=60)
        return accept_everything(request)

    with FakeCollector(answer) as collector:
        agent = agent_process(
            collector.url, start=False, enroll=False, interval=60, send_timeout=90, **no_docker
        )
        process = agent.start()
        wait_for(held.is_set, agent.output)
        asked = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=STOP_SECONDS + 20) == 0, agent.output()
        took = time.monotonic() - asked
    assert STOP_SECONDS - 1 < took < STOP_SECONDS + 10, agent.output()
    assert "stopping without it" in agent.output()
    assert len(agent.spooled()) == 1
