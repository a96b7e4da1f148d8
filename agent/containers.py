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
    """The PORTS column of ``docker ps``: ``0.0.0.0:8080->80/tcp, :::8080->80/tcp, 443/tcp``."""
    parts = []
    for port in sorted(
        ports,
        key=lambda p: (
            p.get("PrivatePort", 0),
            p.get("Type", ""),
            p.get("IP", ""),
            p.get("PublicPort", 0),
        ),
    ):
        target = f"{port['PrivatePort']}/{port.get('Type', 'tcp')}"
        if port.get("PublicPort"):
            host = port.get("IP", "")
            host = f"[{host}]" if ":" in host and host != "::" else host
            parts.append(f"{host}:{port['PublicPort']}->{target}")
        else:
            parts.append(target)
    return ", ".join(dict.fromkeys(parts))
