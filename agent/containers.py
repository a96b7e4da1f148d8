"""The containers on this worker, read from the Docker engine through the Docker SDK
(agent/engine.py), every call bounded by a timeout. Docker failing is DockerUnavailable; a
container vanishing mid-listing is skipped.

Each running container's CPU and memory come from one-shot stats, asked concurrently and
within a time budget (one call takes about a second, so 100 in a row would take minutes).
CPU % is computed from this agent's own previous sample of the container, so it is the
average over the interval between heartbeats, not an instant."""

import concurrent.futures
import logging
from dataclasses import dataclass, replace

from agent.engine import POOL_SIZE, Engine, EngineError, NotFound
from agent.errors import DockerUnavailable, translated
from protocol.heartbeat import MAX_LISTED, Container

log = logging.getLogger(__name__)

_DOCKER_ERRORS = {EngineError: DockerUnavailable}
# Stats calls in flight at once: enough for 100 containers in a few seconds, few enough not
# to load the engine; the engine's client keeps a connection for each.
STATS_WORKERS = POOL_SIZE
MIB = 2**20
DEFAULT_TIMEOUT = 10.0  # AgentConfig's docker_timeout


def list_containers(engine: Engine | str | None, timeout: float | None = None) -> list[Container]:
    """Every container (running or not), as the heartbeat reports it."""
    return survey(engine, timeout).containers


@dataclass(frozen=True)
class Survey:
    containers: list[Container]  # those a heartbeat lists (protocol.heartbeat.listed)
    docker_root: str | None = None  # where the engine keeps its data, for the storage figures
    total: int = 0  # every container the engine has


@dataclass(frozen=True)
class _Sample:
    container: int  # the container's CPU time, ns
    system: int  # the host's CPU time, ns
    cpus: int


class ContainerStats:
    """The previous stats sample of each container, for CPU % over the interval, and the
    threads that ask for stats. The threads live as long as the agent, so a tick starts none;
    what keeps the daemon's memory flat is the unit's cap on malloc arenas
    (systemd/tassium-agent.service, bench/agent_memory.py)."""

    def __init__(self) -> None:
        self._previous: dict[str, _Sample] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=STATS_WORKERS, thread_name_prefix="docker-stats"
        )

    def measure(
        self, client: Engine, ids: list[str], budget: float
    ) -> dict[str, tuple[float | None, float | None]]:
        """CPU % and memory MB per container id, for those whose stats came within ``budget``
        seconds; the others are left out (their container is still listed)."""
        results: dict[str, tuple[float | None, float | None]] = {}
        if not ids:
            return results
        futures = {self._pool.submit(_one_shot, client, i): i for i in ids}
        done, late = concurrent.futures.wait(futures, timeout=budget)
        if late:
            log.info("stats of %d of %d containers not in within %.0f s; left out",
                     len(late), len(ids), budget)  # fmt: skip
            # Those not begun are dropped; those under way end within the engine's timeout.
            for future in late:
                future.cancel()
        for future in done:
            stats = future.result()
            if stats is not None:
                results[futures[future]] = self._figures(futures[future], stats)
        # Forget containers that are gone, so the map does not grow for ever.
        self._previous = {i: s for i, s in self._previous.items() if i in ids}
        return results

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _figures(self, container_id: str, stats: dict) -> tuple[float | None, float | None]:
        cpu = _object(stats.get("cpu_stats"))
        usage = _object(cpu.get("cpu_usage"))
        sample = None
        if isinstance(usage.get("total_usage"), int) and isinstance(
            cpu.get("system_cpu_usage"), int
        ):
            cpus = cpu.get("online_cpus")
            if not isinstance(cpus, int) or cpus < 1:
                percpu = usage.get("percpu_usage")
                cpus = len(percpu) if isinstance(percpu, list) and percpu else 1
            sample = _Sample(usage["total_usage"], cpu["system_cpu_usage"], cpus)
        previous = self._previous.get(container_id)
        percent = None
        if sample is not None:
            self._previous[container_id] = sample
            # A container's CPU time that went back was restarted (same id, counters anew):
            # no average spans that, so no figure until the next sample.
            if (
                previous is not None
                and sample.system > previous.system
                and sample.container >= previous.container
            ):
                share = (sample.container - previous.container) / (sample.system - previous.system)
                percent = round(min(max(share * sample.cpus * 100, 0.0), 100.0 * sample.cpus), 2)
        return percent, _memory_mb(_object(stats.get("memory_stats")))


def _object(value: object) -> dict:
    # An engine's answer is read field by field: a field of another shape counts as absent.
    return value if isinstance(value, dict) else {}


def _data_root(client: Engine) -> str | None:
    try:
        root = _object(client.info()).get("DockerRootDir")
    except EngineError as exc:
        log.debug("no engine info: %s", exc)
        return None
    return root if isinstance(root, str) else None


def _one_shot(client: Engine, container_id: str) -> dict | None:
    try:
        stats = client.stats(container_id)
    except EngineError as exc:
        log.debug("no stats for container %s: %s", container_id[:12], exc)
        return None
    return stats if isinstance(stats, dict) else None


def _memory_mb(memory: dict) -> float | None:
    """Memory as `docker stats` shows it: usage less the inactive page cache."""
    usage = memory.get("usage")
    if not isinstance(usage, int):
        return None
    details = _object(memory.get("stats"))
    # cgroup v1 names it total_inactive_file, v2 inactive_file.
    cache = details.get("total_inactive_file", details.get("inactive_file", 0))
    if isinstance(cache, int) and cache < usage:
        usage -= cache
    return round(usage / MIB, 2)


def survey(
    engine: Engine | str | None,
    timeout: float | None = None,
    stats: ContainerStats | None = None,
    stats_budget: float | None = None,
) -> Survey:
    """Every container (running or not) as the heartbeat reports it; with ``stats``, the
    running ones' CPU and memory too, and the engine's data root.

    ``engine`` is the agent's Engine, kept from tick to tick; a ``docker_host`` (None: the
    local socket) with its ``timeout`` instead gets a client for this survey alone, found
    without the environment.

    The stats get ``stats_budget`` seconds (the Docker timeout by default) of their own after
    the listing, whatever the listing took: each call is bounded by that timeout anyway, and a
    slow listing of many containers must not leave their stats no time at all. A take is thus
    a few Docker timeouts at most, within the 4 × timeout + 10 s the watchdog allows it."""
    if isinstance(engine, Engine):
        return _survey(engine, stats, stats_budget)
    client = Engine(engine, DEFAULT_TIMEOUT if timeout is None else timeout)
    try:
        return _survey(client, stats, stats_budget)
    finally:
        client.close()


def _survey(client: Engine, stats: ContainerStats | None, stats_budget: float | None) -> Survey:
    with translated(_DOCKER_ERRORS, "docker"):
        summaries = client.containers()
        # Only those a heartbeat can list are inspected and measured, in its order: a
        # machine running thousands would otherwise take minutes a tick.
        summaries.sort(key=_listing_order)
        result = []
        for summary in summaries:
            if len(result) == MAX_LISTED:
                break
            container = _describe(client, summary)
            if container is not None:
                result.append(container)
    result.sort(key=lambda c: c.containerName)
    if stats is None:
        return Survey(result, total=len(summaries))
    root = _data_root(client)
    running = [c.id for c in result if c.state == "running" and c.id]
    figures = stats.measure(client, running, stats_budget or client.timeout)
    measured = [
        replace(c, cpuPercent=figures[c.id][0], memUsageMb=figures[c.id][1])
        if c.id in figures
        else c
        for c in result
    ]
    return Survey(measured, root, len(summaries))


def _listing_order(summary: dict) -> tuple:
    # As protocol.heartbeat.listed orders containers, from what the listing already says.
    names = summary.get("Names") or [""]
    return (summary.get("State") != "running", names[0].lstrip("/"), summary.get("Id", ""))


def _describe(client: Engine, summary: dict) -> Container | None:
    try:
        details = client.inspect(summary["Id"])
    except NotFound:
        log.info("container %s vanished while being listed; skipped", summary["Id"][:12])
        return None
    state = details.get("State") or {}
    health = (state.get("Health") or {}).get("Status")
    names = summary.get("Names") or [details.get("Name", "")]
    return Container(
        containerName=names[0].lstrip("/"),
        port=format_ports(summary.get("Ports") or []),
        id=summary["Id"],
        image=summary.get("Image"),
        state=state.get("Status") or summary.get("State"),
        health=health,
    )


def format_ports(ports: list[dict]) -> str:
    """The PORTS column of ``docker ps``, by the Docker CLI's own rules: ports sorted, runs of
    unpublished (or same-numbered) ports folded into ranges and listed first, then each host
    mapping: ``8080/tcp, 127.0.0.1:32768->80/tcp, [::]:32768->80/tcp``."""
    ordered = sorted(
        ports,
        key=lambda p: (
            p.get("PrivatePort", 0),
            p.get("PublicPort", 0),
            p.get("Type", ""),
            p.get("IP", ""),
        ),
    )
    groups: dict[str, list[int]] = {}  # "type" or "ip/type" -> [first, last], in first-seen order
    folded, mappings = [], []
    for port in ordered:
        private, kind, ip = port["PrivatePort"], port.get("Type", "tcp"), port.get("IP", "")
        key = kind
        if ip:
            if port.get("PublicPort") != private:
                mappings.append(f"{_host_port(ip, port.get('PublicPort'))}->{private}/{kind}")
                continue
            key = f"{ip}/{kind}"
        group = groups.get(key)
        if group is not None and private == group[1] + 1:
            group[1] = private
            continue
        if group is not None:
            folded.append(_form_group(key, *group))
        groups[key] = [private, private]
    folded += [_form_group(key, first, last) for key, (first, last) in groups.items()]
    return ", ".join(folded + mappings)


def _form_group(key: str, first: int, last: int) -> str:
    ip, _, kind = key.rpartition("/")
    ports = str(first) if first == last else f"{first}-{last}"
    if ip:
        ports = f"{_host_port(ip, ports)}->{ports}"
    return f"{ports}/{kind}"


def _host_port(ip: str, port: object) -> str:
    # Go's net.JoinHostPort, as the Docker CLI uses it: brackets around IPv6 addresses.
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
