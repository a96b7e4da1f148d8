"""A bounded on-disk queue of heartbeat bodies: append, oldest, acknowledge.

Each entry is one file named by a sequence number, written to a temporary name, flushed and
renamed into place, so a kill -9 at any moment leaves either the whole entry or none of it.
"""

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_ENTRY = re.compile(r"(\d{12})\.json")


@dataclass(frozen=True)
class Entry:
    path: Path
    body: bytes


class Spool:
    def __init__(self, path: Path, max_entries: int):
        self.path = path
        self.max_entries = max_entries
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        for leftover in path.glob(".tmp-*"):
            leftover.unlink(missing_ok=True)  # a write that a crash interrupted
        names = self._names()
        self._next = int(names[-1][:12]) + 1 if names else 1

    def _names(self) -> list[str]:
        return sorted(name for name in os.listdir(self.path) if _ENTRY.fullmatch(name))

    def __len__(self) -> int:
        return len(self._names())

    def append(self, body: bytes) -> Path:
        final = self.path / f"{self._next:012d}.json"
        temporary = self.path / f".tmp-{final.name}"
        with open(temporary, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
        self._fsync_dir()
        self._next += 1
        self._enforce_bound()
        return final

    def oldest(self) -> Entry | None:
        for name in self._names():
            path = self.path / name
            try:
                return Entry(path, path.read_bytes())
            except FileNotFoundError:  # acknowledged by another process meanwhile
                continue
        return None

    def acknowledge(self, entry: Entry) -> None:
        entry.path.unlink(missing_ok=True)

    def _enforce_bound(self) -> None:
        names = self._names()
        excess = len(names) - self.max_entries
        if excess > 0:
            for name in names[:excess]:
                (self.path / name).unlink(missing_ok=True)
            log.warning(
                "spool full (%d entries): dropped the %d oldest undelivered heartbeats",
                self.max_entries,
                excess,
            )

    def _fsync_dir(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
