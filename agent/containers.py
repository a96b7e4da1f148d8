"""The containers on this worker, read through the Docker SDK, every call bounded by a
timeout. Docker failing is DockerUnavailable; a container vanishing mid-listing is skipped."""

import logging
import socket

import docker
import requests
from docker.errors import DockerException, NotFound

from agent.errors import DockerUnavailable, translated
from protocol.heartbeat import Container

log = logging.getLogger(__name__)

_DOCKER_ERRORS = {DockerException: DockerUnavailable, requests.RequestException: DockerUnavailable}


def list_containers(docker_host: str, timeout: float) -> list[Container]:
    """Every container (running or not), as the heartbeat reports it."""
    _check_socket(docker_host, timeout)
    with translated(_DOCKER_ERRORS, "docker"):
        client = docker.APIClient(base_url=docker_host, timeout=timeout, version="auto")
        try:
            summaries = client.containers(all=True)
            result = []
            for summary in summaries:
                container = _describe(client, summary)
                if container is not None:
                    result.append(container)
            return sorted(result, key=lambda c: c.containerName)
        finally:
            client.close()


def _check_socket(docker_host: str, timeout: float) -> None:
    """Connect to a unix socket once ourselves, closing it whatever happens: when connect()
    fails, the Docker SDK's unix transport leaks its socket (docker/docker-py#3356), once
    per tick for as long as dockerd is down."""
    if not docker_host.startswith("unix://"):
        return
    path = "/" + docker_host.removeprefix("unix://").lstrip("/")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        try:
            probe.connect(path)
        except OSError as exc:
            raise DockerUnavailable(f"docker: cannot connect to {path}: {exc}") from None


def _describe(client: docker.APIClient, summary: dict) -> Container | None:
    try:
        details = client.inspect_container(summary["Id"])
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
