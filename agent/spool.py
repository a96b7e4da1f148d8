"""A bounded on-disk queue of heartbeat bodies: append, take the oldest, acknowledge.

Each entry is one file named by a sequence number, written to a temporary name, flushed and
linked into place, so a kill -9 at any moment leaves either the whole entry or none of it,
and two writers (the daemon and a ``once`` beside it) never overwrite each other's entry.
What cannot be read as an entry is moved aside to ``quarantine/`` so it never blocks the rest.
"""

import logging
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_ENTRY = re.compile(r"(\d{12})\.json")
QUARANTINE = "quarantine"
# Larger than any heartbeat the collector accepts (its body limit is 256 KiB by default).
MAX_ENTRY_BYTES = 4 * 1024 * 1024
# A temporary file this old belongs to no write in progress: one takes milliseconds.
STALE_TEMPORARY = 600


@dataclass(frozen=True)
class Entry:
    path: Path
    body: bytes


def entry_names(path: Path) -> list[str]:
    """The spool's entries, oldest first; none when it does not exist. Changes nothing."""
    try:
        return sorted(name for name in os.listdir(path) if _ENTRY.fullmatch(name))
    except (FileNotFoundError, NotADirectoryError):
        return []


def remove_stale_temporaries(directory: Path) -> None:
    """Delete the ``.tmp-*`` files a killed writer left in ``directory``: only old ones, as a
    young one may be another process's write in progress."""
    for leftover in directory.glob(".tmp-*"):
        try:
            if time.time() - leftover.lstat().st_mtime > STALE_TEMPORARY:
                leftover.unlink()
        except FileNotFoundError:
            pass


class Spool:
    """The spool as its writers (``run``, ``once``) use it; it creates its directory."""

    def __init__(self, path: Path, max_entries: int):
        self.path = path
        self.max_entries = max_entries
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        remove_stale_temporaries(path)
        names = entry_names(path)
        self._next = int(names[-1][:12]) + 1 if names else 1
        self._unmovable: set[str] = set()

    def __len__(self) -> int:
        return sum(name not in self._unmovable for name in entry_names(self.path))

    def append(self, body: bytes) -> Path:
        """Write one entry durably; raises OSError when the disk refuses it."""
        temporary = self.path / f".tmp-{os.getpid()}-{self._next:012d}"
        try:
            with open(temporary, "wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            while True:
                final = self.path / f"{self._next:012d}.json"
                try:
                    os.link(temporary, final)  # unlike a rename, never replaces an entry
                    break
                except FileExistsError:  # another writer took this number
                    names = entry_names(self.path)
                    self._next = max(self._next, int(names[-1][:12])) + 1
        finally:
            temporary.unlink(missing_ok=True)
        self._fsync_dir()
        self._next += 1
        self._enforce_bound()
        return final

    def take(self, count: int) -> list[Entry]:
        """Up to ``count`` whole entries, oldest first; what cannot be read is quarantined."""
        taken: list[Entry] = []
        for name in entry_names(self.path):
            if len(taken) == count:
                break
            if name in self._unmovable:
                continue
            try:
                taken.append(Entry(self.path / name, self._read(name)))
            except FileNotFoundError:  # acknowledged or dropped by another process meanwhile
                continue
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                self._quarantine(name, exc)
        return taken

    def oldest(self) -> Entry | None:
        taken = self.take(1)
        return taken[0] if taken else None

    def _read(self, name: str) -> bytes:
        # O_NOFOLLOW and O_NONBLOCK: a symlink or a FIFO planted here is refused, not
        # followed or waited on.
        fd = os.open(self.path / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ValueError("not a regular file")
            if info.st_size > MAX_ENTRY_BYTES:
                raise ValueError(f"larger than {MAX_ENTRY_BYTES} bytes")
            with os.fdopen(fd, "rb", closefd=False) as handle:
                body = handle.read()
        finally:
            os.close(fd)
        body.decode("utf-8")  # the batch route carries bodies as JSON text
        return body

    def _quarantine(self, name: str, problem: Exception) -> None:
        aside = self.path / QUARANTINE
        try:
            aside.mkdir(mode=0o700, exist_ok=True)
            os.rename(self.path / name, aside / name)
        except OSError as exc:
            self._unmovable.add(name)
            log.error(
                "spool entry %s cannot be read (%s) nor moved aside (%s): skipping it",
                name,
                problem,
                exc.strerror,
            )
            return
        log.error("spool entry %s cannot be read (%s): moved to %s", name, problem, aside)

    def acknowledge(self, entry: Entry) -> None:
        entry.path.unlink(missing_ok=True)

    def _enforce_bound(self) -> None:
        names = entry_names(self.path)
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
