"""The agent's errors, translated at the edges so the rest of the agent sees only these:

AgentError
├── ConfigError        the configuration file or environment is wrong
├── KeyFileError       the signing key is missing, unreadable or too open
├── DockerUnavailable  the Docker engine did not answer (down, slow, refusing)
└── DeliveryError      the collector could not be reached or answered an error
    └── Rejected       the collector refused the heartbeat for good (400, 413, 422)
"""

from collections.abc import Iterator
from contextlib import contextmanager


class AgentError(Exception):
    pass


class ConfigError(AgentError):
    pass


class KeyFileError(AgentError):
    pass


class DockerUnavailable(AgentError):
    pass


class DeliveryError(AgentError):
    pass


class Rejected(DeliveryError):
    def __init__(self, status: int, message: str):
        super().__init__(f"collector refused the heartbeat ({status}): {message}")
        self.status = status


@contextmanager
def translated(mapping: dict[type[Exception], type[AgentError]], what: str) -> Iterator[None]:
    """Turn a library's exceptions into ours at the edge, as httpx's map_httpcore_exceptions."""
    try:
        yield
    except tuple(mapping) as exc:
        for source, target in mapping.items():
            if isinstance(exc, source):
                raise target(f"{what}: {exc}") from exc
        raise
