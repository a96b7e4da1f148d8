"""agent.containers against the real Docker engine, format_ports on its own, and a fake
engine on a unix socket for failures the real one cannot produce on demand."""

import re
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import replace

import pytest

from agent.containers import STATS_WORKERS, ContainerStats, format_ports, list_containers, survey
from agent.errors import DockerUnavailable
from agent.machine import Machine
from protocol.heartbeat import Container
from tests.agent.conftest import IMAGE
from tests.agent.fake_engine import (
    INSPECT_PATH,
    LIST_PATH,
    STATS_PATH,
    VERSION_PATH,
)

TIMEOUT = 10.0  # what the agent gives the real engine per call
SETTLE = 30.0  # how long a health check may take to settle before the test gives up
HEALTHCHECK_INTERVAL = 300_000_000  # nanoseconds
ANY_IPV4 = "0.0.0.0"  # noqa: S104 - what the engine reports for a port published on all addresses


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def listed(host: str, container_id: str) -> Container | None:
    return next((c for c in list_containers(host, TIMEOUT) if c.id == container_id), None)


def wait_for_health(host: str, container_id: str) -> Container:
    """Poll list_containers until the container's health check has a verdict."""
    deadline = time.monotonic() + SETTLE
    while True:
        found = listed(host, container_id)
        assert found is not None, f"{container_id} is not listed"
        if found.health not in (None, "starting"):
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"health of {found.containerName} still {found.health!r} after {SETTLE} s")
        time.sleep(0.1)


# --- the real engine -------------------------------------------------------------------------


def test_it_lists_a_running_container_with_its_name_id_image_and_state(dockerd, run_container):
    name = unique("running")
    started = run_container("sleep", "300", name=name)

    found = listed(dockerd.host, started.id)

    assert found == Container(
        containerName=name, port="", id=started.id, image=IMAGE, state="running", health=None
    )


def test_it_lists_an_exited_container_as_exited(dockerd, run_container):
    started = run_container("true", name=unique("exited"))
    assert started.wait(timeout=30)["StatusCode"] == 0

    found = listed(dockerd.host, started.id)

    assert found is not None
    assert found.state == "exited"


@pytest.mark.parametrize(("check", "health"), [("true", "healthy"), ("false", "unhealthy")])
def test_it_reports_the_health_check_verdict(dockerd, run_container, check, health):
    started = run_container(
        "sleep",
        "300",
        name=unique(health),
        healthcheck={
            "test": ["CMD", "busybox", check],
            "interval": HEALTHCHECK_INTERVAL,
            "retries": 1,
        },
    )

    found = wait_for_health(dockerd.host, started.id)

    assert found.health == health
    assert found.state == "running"


def test_it_formats_published_and_exposed_ports_as_docker_ps_does(dockerd, run_container):
    started = run_container(
        "httpd",
        "-f",
        "-p",
        "80",
        name=unique("web"),
        ports={"80/tcp": ("127.0.0.1", None), "8080/tcp": []},  # 8080 exposed, not published
    )
    started.reload()
    host_port = started.ports["80/tcp"][0]["HostPort"]

    expected = f"8080/tcp, 127.0.0.1:{host_port}->80/tcp"

    # The engine's list view can lag behind a container that just started, under load; what
    # must hold is that the agent shows what `docker ps` shows once the engine settled.
    def both() -> tuple[str | None, str]:
        found = listed(dockerd.host, started.id)
        shown = subprocess.run(
            ["docker", "-H", dockerd.host, "ps", "--filter", f"id={started.id}",
             "--format", "{{.Ports}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()  # fmt: skip
        return (found.port if found else None), shown

    deadline = time.monotonic() + 20
    while (seen := both()) != (expected, expected) and time.monotonic() < deadline:
        time.sleep(0.2)
    # Now and then, on a busy machine, the engine never settles within the time: it keeps
    # listing this binding twice (and `docker ps` shows that too). Formatting is checked case
    # by case in test_format_ports_writes_the_docker_ps_ports_column; here the agent must
    # still show exactly what `docker ps` shows.
    agent, docker_ps = seen
    assert agent == docker_ps, seen
    assert docker_ps == expected or docker_ps.count("->80/tcp") == 2, seen


def test_it_lists_every_container_sorted_by_name(dockerd, run_container):
    suffix = uuid.uuid4().hex[:12]
    for name in (f"zz-{suffix}", f"aa-{suffix}", f"mm-{suffix}"):
        run_container("sleep", "300", name=name)

    names = [c.containerName for c in list_containers(dockerd.host, TIMEOUT)]

    ours = [name for name in names if name.endswith(suffix)]
    assert ours == [f"aa-{suffix}", f"mm-{suffix}", f"zz-{suffix}"]
    assert names == sorted(names)


# --- format_ports ----------------------------------------------------------------------------


def published(ip: str, public: int, private: int, kind: str = "tcp") -> dict:
    return {"IP": ip, "PrivatePort": private, "PublicPort": public, "Type": kind}


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        pytest.param([], "", id="none"),
        pytest.param([published(ANY_IPV4, 8080, 80)], "0.0.0.0:8080->80/tcp", id="ipv4"),
        pytest.param([published("::", 8080, 80)], "[::]:8080->80/tcp", id="ipv6-any"),
        pytest.param([published("::1", 8080, 80)], "[::1]:8080->80/tcp", id="ipv6-address"),
        pytest.param([{"PrivatePort": 443, "Type": "tcp"}], "443/tcp", id="unpublished"),
        pytest.param([published(ANY_IPV4, 5353, 53, "udp")], "0.0.0.0:5353->53/udp", id="udp"),
        pytest.param(
            [published(ANY_IPV4, 53, 53, "udp"), published(ANY_IPV4, 53, 53, "tcp")],
            "0.0.0.0:53->53/tcp, 0.0.0.0:53->53/udp",
            id="tcp-and-udp",
        ),
        pytest.param([{"PrivatePort": 80}], "80/tcp", id="type-missing-means-tcp"),
        pytest.param(
            [published("::", 8080, 80), published(ANY_IPV4, 8080, 80)],
            "0.0.0.0:8080->80/tcp, [::]:8080->80/tcp",
            id="ipv4-before-ipv6",
        ),
        pytest.param(
            [{"PrivatePort": 443, "Type": "tcp"}, {"PrivatePort": 444, "Type": "tcp"}],
            "443-444/tcp",
            id="unpublished-range",
        ),
        pytest.param(
            [published(ANY_IPV4, 8000, 8000), published(ANY_IPV4, 8001, 8001)],
            "0.0.0.0:8000-8001->8000-8001/tcp",
            id="same-numbered-range",
        ),
        pytest.param(
            [{"PrivatePort": 443, "Type": "tcp"}, published("127.0.0.1", 32768, 80)],
            "443/tcp, 127.0.0.1:32768->80/tcp",
            id="unpublished-before-mappings",
        ),
    ],
)
def test_format_ports_writes_the_docker_ps_ports_column(ports, expected):
    assert format_ports(ports) == expected


# --- a fake engine for failures --------------------------------------------------------------


@pytest.fixture
def missing_engine(socket_dir) -> str:
    return f"unix://{socket_dir / 'no-such.sock'}"


@pytest.fixture
def refusing_engine(socket_dir):
    """A socket file that nobody accepts connections on (dockerd died, its socket stayed)."""
    path = socket_dir / "dead.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:
        bound.bind(str(path))
        yield f"unix://{path}"


def test_the_fake_engine_is_listed_like_a_real_one(engine):
    web = engine.add(
        "web", health="healthy", ports=[published(ANY_IPV4, 8080, 80), published("::", 8080, 80)]
    )
    old = engine.add("old", state="exited")

    found = list_containers(engine.host, TIMEOUT)

    assert found == [
        Container("old", "", old, "local/busybox", "exited", None),
        Container(
            "web",
            "0.0.0.0:8080->80/tcp, [::]:8080->80/tcp",
            web,
            "local/busybox",
            "running",
            "healthy",
        ),
    ]
    # What the agent asks for (agent/engine.py), and so what the fake must answer.
    assert engine.paths[0] == "/version"
    assert re.fullmatch(LIST_PATH, engine.paths[1])
    assert all(re.fullmatch(INSPECT_PATH, path) for path in engine.paths[2:])
    assert len(engine.paths) == 4


def test_it_skips_a_container_that_vanishes_mid_listing(engine):
    engine.add("web")
    gone = engine.add("gone")
    engine.add("worker")
    engine.vanish(gone)

    found = list_containers(engine.host, TIMEOUT)

    assert [c.containerName for c in found] == ["web", "worker"]
    assert any(path.endswith(f"/containers/{gone}/json") for path in engine.paths)


@pytest.mark.parametrize(
    "path", [VERSION_PATH, LIST_PATH, INSPECT_PATH], ids=["version", "list", "inspect"]
)
@pytest.mark.parametrize("status", [500, 503])
def test_an_engine_answering_an_error_is_docker_unavailable(engine, path, status):
    engine.add("web")
    engine.fail(status, on=path)

    with pytest.raises(DockerUnavailable, match="^docker: "):
        list_containers(engine.host, TIMEOUT)


@pytest.mark.parametrize(
    "path", [VERSION_PATH, LIST_PATH, INSPECT_PATH], ids=["version", "list", "inspect"]
)
def test_an_engine_slower_than_the_timeout_is_docker_unavailable(engine, path):
    engine.add("web")
    engine.hang(on=path)

    with pytest.raises(DockerUnavailable, match="^docker: "):
        list_containers(engine.host, 0.2)
    assert re.fullmatch(path, engine.paths[-1])  # it gave up on the call that hung


@pytest.mark.parametrize("unreachable", ["missing_engine", "refusing_engine"])
def test_an_engine_that_is_not_there_is_docker_unavailable(request, unreachable):
    host = request.getfixturevalue(unreachable)

    with pytest.raises(DockerUnavailable, match="^docker: "):
        list_containers(host, TIMEOUT)


# --- what Agent.collect() reports ------------------------------------------------------------


@pytest.fixture(params=["missing", "refusing", "failing", "hanging"])
def down_engine(request) -> str:
    if request.param == "missing":
        return request.getfixturevalue("missing_engine")
    if request.param == "refusing":
        return request.getfixturevalue("refusing_engine")
    engine = request.getfixturevalue("engine")
    engine.add("web")
    if request.param == "failing":
        engine.fail(500)
    else:
        engine.hang()
    return engine.host


def test_collect_reports_docker_unavailable_and_no_containers_when_docker_is_down(
    collect, down_engine
):
    heartbeat = collect(down_engine, docker_timeout=0.2)

    assert heartbeat.agent.dockerAvailable is False
    assert heartbeat.containers == ()
    assert b'"dockerAvailable":false' in heartbeat.to_body()


def test_collect_reports_the_engines_containers_when_docker_is_up(collect, dockerd, run_container):
    name = unique("collected")
    started = run_container("sleep", "300", name=name)

    heartbeat = collect(dockerd.host)

    assert heartbeat.agent.dockerAvailable is True
    (ours,) = [c for c in heartbeat.containers if c.id == started.id]
    assert replace(ours, memUsageMb=None) == Container(name, "", started.id, IMAGE, "running")
    # Memory from its stats; CPU needs a previous sample of this agent's, so not yet.
    assert ours.memUsageMb > 0 and ours.cpuPercent is None


def test_collect_reports_what_the_fake_engine_lists(collect, engine):
    engine.add("web", ports=[published(ANY_IPV4, 8080, 80)])

    heartbeat = collect(engine.host)

    assert heartbeat.agent.dockerAvailable is True
    assert [(c.containerName, c.port) for c in heartbeat.containers] == [
        ("web", "0.0.0.0:8080->80/tcp")
    ]


# --- stats -------------------------------------------------------------------------------------

MIB = 2**20


def one_shot(container_ns: int, system_ns: int, cpus: int = 2, memory: dict | None = None):
    """A one-shot stats document as the engine answers it (no precpu_stats with one_shot)."""
    return {
        "cpu_stats": {
            "cpu_usage": {"total_usage": container_ns},
            "system_cpu_usage": system_ns,
            "online_cpus": cpus,
        },
        "memory_stats": memory if memory is not None else {"usage": 64 * MIB, "stats": {}},
    }


def measured(engine, stats, container_id, **kwargs) -> Container:
    (found,) = [c for c in survey(engine.host, 2.0, stats, **kwargs).containers
                if c.id == container_id]  # fmt: skip
    return found


def test_cpu_percent_is_the_average_since_the_agents_own_previous_sample(engine):
    web = engine.add("web")
    stats = ContainerStats()
    engine.stats[web] = one_shot(container_ns=1_000_000_000, system_ns=10_000_000_000)
    first = measured(engine, stats, web)
    assert first.cpuPercent is None and first.memUsageMb == 64.0

    # 1 s of the container's CPU time over 10 s of the host's two CPUs' time: 20 % of a CPU.
    engine.stats[web] = one_shot(container_ns=2_000_000_000, system_ns=20_000_000_000)
    assert measured(engine, stats, web).cpuPercent == 20.0
    # Nothing used since: 0, not the previous figure.
    engine.stats[web] = one_shot(container_ns=2_000_000_000, system_ns=30_000_000_000)
    assert measured(engine, stats, web).cpuPercent == 0.0


def stats_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("docker-stats")}


def test_the_stats_threads_are_kept_from_tick_to_tick(engine):
    # A tick starts no threads: the pool's are kept for the agent's life.
    before = stats_threads()
    names = [engine.add(f"web-{i}") for i in range(6)]
    for container in names:
        engine.stats[container] = one_shot(1, 1)
    stats = ContainerStats()
    survey(engine.host, 2.0, stats)
    first = stats_threads() - before
    for _ in range(4):
        survey(engine.host, 2.0, stats)
    now = stats_threads() - before
    # The pool may start a few more of them, never more than its size, and ends none.
    assert first and first <= now and len(now) <= STATS_WORKERS
    stats.close()


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        ({"usage": 100 * MIB, "stats": {"total_inactive_file": 30 * MIB}}, 70.0),  # cgroup v1
        ({"usage": 100 * MIB, "stats": {"inactive_file": 40 * MIB}}, 60.0),  # cgroup v2
        ({"usage": 100 * MIB}, 100.0),
        ({}, None),
    ],
)
def test_memory_is_usage_less_the_inactive_page_cache_as_docker_stats_shows_it(
    engine, memory, expected
):
    web = engine.add("web")
    engine.stats[web] = one_shot(1, 1, memory=memory)
    assert measured(engine, ContainerStats(), web).memUsageMb == expected


def test_only_running_containers_are_asked_for_stats(engine):
    running, exited = engine.add("web"), engine.add("old", state="exited")
    engine.stats[running] = engine.stats[exited] = one_shot(1, 1)
    survey(engine.host, 2.0, ContainerStats())
    asked = {re.fullmatch(STATS_PATH, p)[1] for p in engine.paths if re.fullmatch(STATS_PATH, p)}
    assert asked == {running}


@pytest.mark.parametrize("trouble", ["error", "vanished", "hangs"])
def test_a_container_whose_stats_fail_is_still_listed_without_them(engine, trouble):
    web, db = engine.add("web"), engine.add("db")
    engine.stats[db] = one_shot(1, 1)
    if trouble == "error":
        engine.stats[web] = one_shot(1, 1)
        engine.fail(500, on=STATS_PATH.replace("([^/]+)", web))
    elif trouble == "hangs":
        engine.stats[web] = one_shot(1, 1)
        engine.hang(on=STATS_PATH.replace("([^/]+)", web))
    # "vanished": gone between listing and its stats call (the engine answers 404).
    started = time.monotonic()
    found = {c.containerName: c for c in survey(engine.host, 2.0, ContainerStats(),
                                                stats_budget=1.0).containers}  # fmt: skip
    assert time.monotonic() - started < 5  # the budget holds, not the hung call
    assert found["web"].memUsageMb is None and found["web"].state == "running"
    assert found["db"].memUsageMb == 64.0


def test_the_data_root_comes_from_the_engine(engine, tmp_path):
    engine.data_root = str(tmp_path)
    assert survey(engine.host, 2.0, ContainerStats()).docker_root == str(tmp_path)
    engine.data_root = None  # an engine that does not say: no storage figures, no failure
    assert survey(engine.host, 2.0, ContainerStats()).docker_root is None


def test_a_restarted_container_gets_no_cpu_figure_until_its_next_sample(engine):
    web = engine.add("web")
    stats = ContainerStats()
    engine.stats[web] = one_shot(container_ns=5_000_000_000, system_ns=10_000_000_000)
    measured(engine, stats, web)
    # Restarted under the same id: its CPU time starts again from zero.
    engine.stats[web] = one_shot(container_ns=100_000_000, system_ns=20_000_000_000)
    assert measured(engine, stats, web).cpuPercent is None
    engine.stats[web] = one_shot(container_ns=1_100_000_000, system_ns=30_000_000_000)
    assert measured(engine, stats, web).cpuPercent == 20.0


@pytest.mark.parametrize(("api", "one_shot_sent"), [("1.41", True), ("1.40", False)])
def test_an_engine_without_one_shot_stats_is_sampled_the_plain_way(engine, api, one_shot_sent):
    engine.api_version = api  # one-shot came with API 1.41 (Docker 20.10)
    web = engine.add("web")
    engine.stats[web] = one_shot(1, 1)
    assert measured(engine, ContainerStats(), web).memUsageMb == 64.0
    (query,) = engine.queries[f"/v{api}/containers/{web}/stats"]
    assert ("one-shot=True" in query) is one_shot_sent and "stream=False" in query


@pytest.mark.parametrize(
    "document",
    [
        {"cpu_stats": [], "memory_stats": "plenty"},
        {"cpu_stats": {"cpu_usage": None, "online_cpus": "two"}, "memory_stats": {"stats": 7}},
        ["not", "an", "object"],
    ],
)
def test_stats_of_another_shape_are_left_out_without_failing_the_heartbeat(engine, document):
    web, db = engine.add("web"), engine.add("db")
    engine.stats[web], engine.stats[db] = document, one_shot(1, 1)
    found = {c.containerName: c for c in survey(engine.host, 2.0, ContainerStats()).containers}
    assert (found["web"].cpuPercent, found["web"].memUsageMb) == (None, None)
    assert found["db"].memUsageMb == 64.0


def test_a_busy_container_shows_cpu_and_an_idle_one_almost_none_on_the_real_engine(
    dockerd, run_container
):
    busy = run_container("sh", "-c", "while :; do :; done", name=unique("busy"))
    idle = run_container("sleep", "300", name=unique("idle"))
    stats = ContainerStats()
    first = {c.id: c for c in survey(dockerd.host, TIMEOUT, stats).containers}
    assert first[busy.id].cpuPercent is None  # no sample of this agent's to compare with yet
    time.sleep(1)
    found = survey(dockerd.host, TIMEOUT, stats)
    second = {c.id: c for c in found.containers}
    assert second[busy.id].cpuPercent > 10  # a busy loop keeps about one core busy
    assert second[idle.id].cpuPercent < 5
    assert second[busy.id].memUsageMb > 0 and second[idle.id].memUsageMb > 0
    if dockerd.process is not None:  # our own engine, whose data root we chose
        assert found.docker_root == str(dockerd.dir / "data")
    facts = Machine().read(found.docker_root)
    assert 0 < facts.storageUsedGb <= facts.storageTotalGb
