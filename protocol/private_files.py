"""Files that hold a secret (the agent's key, the collector's receipt key), the same way on
both sides: written 0600 from the first byte, whole or not at all, and refused when anyone
but their owner may use them."""

import os
import secrets
import stat
from pathlib import Path


class TooOpen(Exception):
    """A secret's file that its group or others may read or write."""


def too_open(mode: int) -> bool:
    """Whether a file of this mode lets its group or others at it."""
    return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))


def create(path: Path, data: bytes) -> None:
    """A new file at ``path`` holding ``data``, mode 0600; FileExistsError when there is one
    already, which is left as it was. Its directory is made (0700) when missing."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = _written_aside(path, data)
    try:
        # A link, not a rename: it fails rather than replace a file another process made
        # meanwhile, and a reader never sees the file half written.
        os.link(temporary, path)
    finally:
        temporary.unlink()
    _sync_directory(path.parent)


def replace(path: Path, data: bytes) -> None:
    """Replace the file at ``path`` by one holding ``data``, mode 0600, in one step: a reader
    finds the old file or the new one, never a mix."""
    temporary = _written_aside(path, data)
    try:
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def read(path: Path) -> bytes:
    """The file's bytes; TooOpen when its group or others may use it (FileNotFoundError and
    other OSErrors as open raises them)."""
    with path.open("rb") as handle:
        # The mode of the file opened, not of whatever the name points to a moment later.
        if too_open(os.fstat(handle.fileno()).st_mode):
            raise TooOpen(f"{path} is readable by others: chmod 600 {path}")
        return handle.read()


def _written_aside(path: Path, data: bytes) -> Path:
    """``data`` in a new file beside ``path``, synced. O_EXCL with the mode at creation: the
    secret is never readable by others, not even briefly."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _sync_directory(directory: Path) -> None:
    """Make the new name survive a crash (best effort: not every file system can)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
