"""agent.engine: one Docker SDK client for the agent's life, found where the docker CLI finds
the engine (docker_host, DOCKER_HOST, the current context, the local socket), over a unix
socket, TCP with TLS client certificates and ssh://."""

import gc
import hashlib
import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from agent.config import load_config
from agent.containers import ContainerStats, survey
from agent.engine import DEFAULT_HOST, Engine, EngineError
from agent.errors import DockerUnavailable
from tests.agent.conftest import make_foreign_client
from tests.agent.fake_engine import FakeEngine
from tests.factories import new_wallet

TIMEOUT = 10.0


@pytest.fixture
def client():
    """``client(host, environment)``: an Engine, closed after the test."""
    made: list[Engine] = []

    def make(host: str | None, environment: dict | None = None, timeout: float = TIMEOUT):
        made.append(Engine(host, timeout, environment))
        return made[-1]

    yield make
    for one in made:
        one.close()
    gc.collect()  # an unclosed socket or unreaped ssh fails the test that left it


def names(engine: Engine) -> list[str]:
    return [c.containerName for c in survey(engine).containers]


def ours(engine: Engine, started) -> list:
    """What the agent lists of the containers this test started (the engine is shared)."""
    ids = {s.id for s in started}
    return [c for c in survey(engine).containers if c.id in ids]


# --- one client, one GET /version --------------------------------------------------------------


def test_the_api_version_is_asked_once_for_many_ticks(engine, client):
    web = engine.add("web")
    engine.stats[web] = {"memory_stats": {"usage": 2**20}}
    agent_engine, stats = client(engine.host), ContainerStats()

    for _ in range(5):
        found = survey(agent_engine, stats=stats)
        assert [c.memUsageMb for c in found.containers] == [1.0]

    assert engine.paths.count("/version") == 1
    assert all(p == "/version" or p.startswith("/v1.41/") for p in engine.paths)


def test_an_engine_down_at_start_is_found_once_it_is_up(socket_dir, client):
    agent_engine = client(f"unix://{socket_dir / 'docker.sock'}")
    with pytest.raises(EngineError, match=r"cannot reach .*No such file or directory"):
        agent_engine.containers()

    fake = FakeEngine(socket_dir / "docker.sock").start()
    try:
        fake.add("web")
        assert names(agent_engine) == ["web"]
        assert names(agent_engine) == ["web"]
        assert fake.paths.count("/version") == 1
    finally:
        agent_engine.close()
        fake.stop()


@pytest.mark.parametrize(
    ("trouble", "sentence"),
    [
        ("missing", r"^docker: cannot reach the engine at unix://\S+/nothing\.sock \(GET /version\)"
                    r": \[Errno 2\] No such file or directory$"),
        ("error", r"^docker: the engine at unix://\S+ answered 500 Internal Server Error to "
                  r"GET /v1\.41/containers/json: fake engine failure$"),
        ("slow", r"^docker: the engine at unix://\S+ did not answer GET /containers/json "
                 r"within 0\.3 s$"),
    ],
)  # fmt: skip
def test_a_failing_engine_is_named_in_one_sentence(engine, client, socket_dir, trouble, sentence):
    host = engine.host
    if trouble == "missing":
        host = f"unix://{socket_dir / 'nothing.sock'}"
    elif trouble == "error":
        engine.fail(500, on=r"/v[\d.]+/containers/json")
    else:
        engine.hang(on=r"/v[\d.]+/containers/json")

    with pytest.raises(DockerUnavailable) as raised:
        survey(client(host, timeout=0.3))

    assert re.fullmatch(sentence, str(raised.value)), str(raised.value)


# --- where the engine is -------------------------------------------------------------------------


def test_with_nothing_set_the_engine_is_the_local_socket(client, tmp_path):
    assert client(None).address == DEFAULT_HOST
    # A Docker config without a current context changes nothing.
    (tmp_path / "config.json").write_text("{}")
    assert client(None, {"DOCKER_CONFIG": str(tmp_path)}).address == DEFAULT_HOST


def test_docker_host_in_the_environment_names_the_engine(engine, client):
    engine.add("web")
    assert names(client(None, {"DOCKER_HOST": engine.host})) == ["web"]


def test_docker_host_in_the_agents_configuration_beats_the_environment(engine, client):
    engine.add("web")
    assert names(client(engine.host, {"DOCKER_HOST": "unix:///nonexistent.sock"})) == ["web"]


def write_context(config_dir: Path, name: str, host: str, *, current: bool = False) -> None:
    """A context as ``docker context create NAME --docker host=HOST`` stores it."""
    meta = config_dir / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(
        json.dumps(
            {
                "Name": name,
                "Metadata": {},
                "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}},
            }
        )
    )
    if current:
        (config_dir / "config.json").write_text(json.dumps({"currentContext": name}))


def test_the_current_docker_context_names_the_engine(dockerd, run_container, client, tmp_path):
    started = run_container("sleep", "300", name=f"context-{os.getpid()}-{id(tmp_path)}")
    write_context(tmp_path, "worker", dockerd.host, current=True)

    agent_engine = client(None, {"DOCKER_CONFIG": str(tmp_path)})

    assert agent_engine.address == dockerd.host
    assert [c.id for c in ours(agent_engine, [started])] == [started.id]


def test_docker_context_selects_a_context_and_docker_host_beats_it(engine, client, tmp_path):
    engine.add("web")
    write_context(tmp_path, "elsewhere", "unix:///nonexistent.sock", current=True)
    write_context(tmp_path, "fake", engine.host)
    config = {"DOCKER_CONFIG": str(tmp_path)}

    assert names(client(None, {**config, "DOCKER_CONTEXT": "fake"})) == ["web"]
    assert client(None, config).address == "unix:///nonexistent.sock"
    both = {**config, "DOCKER_CONTEXT": "elsewhere", "DOCKER_HOST": engine.host}
    assert names(client(None, both)) == ["web"]


def test_an_unknown_context_is_named(client, tmp_path):
    with pytest.raises(DockerUnavailable, match="the Docker context 'gone' does not exist"):
        survey(client(None, {"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "gone"}))


def test_the_configuration_carries_the_docker_variables_to_the_engine(engine, minimal_config):
    engine.add("web")
    config = load_config(minimal_config, {"DOCKER_HOST": engine.host, "HOME": "/nowhere"})
    agent_engine = Engine.from_config(config)
    try:
        assert names(agent_engine) == ["web"]
    finally:
        agent_engine.close()


@pytest.fixture
def minimal_config(tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_text(f"collector_url: http://127.0.0.1:9\nwallet: '{new_wallet()}'\n")
    return path


# --- TCP with TLS client certificates -----------------------------------------------------------


@pytest.fixture
def tls(dockerd):
    if not (dockerd.tls_host and dockerd.cert_path):
        pytest.skip("the engine named by TEST_DOCKER_HOST has no TEST_DOCKER_TLS_HOST")
    return dockerd


def test_the_engine_over_tls_lists_what_the_socket_lists(tls, run_container, client):
    started = [run_container("sleep", "300", name=f"tls-{n}-{os.getpid()}") for n in range(2)]
    environment = {
        "DOCKER_HOST": tls.tls_host,
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(tls.cert_path),
    }

    over_tls = ours(client(None, environment), started)

    assert over_tls == ours(client(tls.host), started)
    assert len(over_tls) == 2


def test_a_client_certificate_of_another_ca_is_refused(tls, client, tmp_path):
    foreign = make_foreign_client(tmp_path / "foreign", tls.cert_path / "ca.pem")
    environment = {
        "DOCKER_HOST": tls.tls_host,
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(foreign),
    }

    sentence = rf"^docker: TLS with the engine at {tls.tls_host} failed \(GET /version\): "
    with pytest.raises(DockerUnavailable, match=sentence):
        survey(client(None, environment))


def test_missing_client_certificate_files_are_named(tls, client, tmp_path):
    (tmp_path / "ca.pem").write_bytes((tls.cert_path / "ca.pem").read_bytes())
    environment = {"DOCKER_HOST": tls.tls_host, "DOCKER_CERT_PATH": str(tmp_path)}

    with pytest.raises(DockerUnavailable, match=f"cert.pem and key.pem in {tmp_path}"):
        survey(client(None, environment))


def test_an_agent_without_the_client_certificate_reports_docker_unavailable(tls, collect):
    heartbeat = collect(tls.tls_host, TIMEOUT)

    assert heartbeat.agent.dockerAvailable is False
    with pytest.raises(DockerUnavailable, match="HTTP request to an HTTPS server"):
        survey(Engine(tls.tls_host, TIMEOUT))


# --- ssh:// ------------------------------------------------------------------------------------


@pytest.fixture
def fake_ssh(dockerd, tmp_path, monkeypatch):
    """An ``ssh`` first on PATH that, whatever host it is given, runs ``docker system
    dial-stdio`` against the test engine (and notes its arguments)."""
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        pytest.skip("no docker CLI on PATH (apt-get install docker.io) for dial-stdio")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "ssh-calls"
    script = bin_dir / "ssh"
    script.write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\nexec {docker_cli} -H {dockerd.host} system dial-stdio\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_the_engine_over_ssh_lists_what_the_socket_lists(fake_ssh, dockerd, run_container, client):
    started = run_container("sleep", "300", name=f"ssh-{os.getpid()}")
    over_ssh = client(None, {"DOCKER_HOST": "ssh://someone@worker.example"})

    first = ours(over_ssh, [started])
    survey(over_ssh, stats=ContainerStats())  # stats calls from several threads, too

    assert first == ours(client(dockerd.host), [started])
    assert len(first) == 1
    call = fake_ssh.read_text().splitlines()[0]
    assert call.endswith("-l someone -- worker.example docker system dial-stdio")


def test_an_ssh_that_fails_is_docker_unavailable(tmp_path, monkeypatch, client):
    script = tmp_path / "ssh"
    script.write_text("#!/bin/sh\necho 'ssh: Could not resolve hostname' >&2\nexit 255\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")

    with pytest.raises(DockerUnavailable, match="^docker: .*ssh://worker.example"):
        survey(client("ssh://worker.example", timeout=2))
