"""The receipts of this worker's credited heartbeats (issue 24), kept under
``state_dir/receipts`` so that its owner can prove the uptime a payout is for.

A window only grows, so the last receipt of a window stands for all its earlier ones
(``latest_per_window`` in protocol/receipt_files.py): one receipt per window is kept, in one
file per UTC month of the window's start (``2026-11.jsonl``), a receipt a line in its wire
form. Keeping one rewrites its month's file whole: to a temporary name, flushed, then renamed
into place, so a kill -9 at any moment leaves the old file or the new one, never half of
either; a lock file lets the daemon and a ``once`` beside it take turns. Bounded on disk: at
most MAX_WINDOWS windows a month (the oldest dropped past it) and MAX_MONTHS months.

Only the month being written is held in memory, as its lines: a steady worker's month is a
handful of windows, so a heartbeat rewrites a few kilobytes. A file that cannot be read is
moved aside to ``quarantine/``, what can be read of it kept, so it never stops a heartbeat.
"""

import contextlib
import fcntl
import json
import logging
import os
import re
import stat
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from agent.spool import remove_stale_temporaries
from protocol import ProtocolError
from protocol.receipt_files import latest_per_window
from protocol.receipts import SignedReceipt, heartbeat_sha256
from protocol.times import format_millis

log = logging.getLogger(__name__)

# A window every three minutes for a whole month is a worker flapping, not one working. A
# period of up to 366 days touches 13 months, whose receipts must fit in one receipt file.
MAX_WINDOWS = 15_000
# Two years and the month in progress: longer than any payout is disputed.
MAX_MONTHS = 25
# A full month's file is about 10 MB; a larger one is not one the agent wrote.
MAX_FILE_BYTES = 32 * 1024 * 1024
QUARANTINE = "quarantine"
QUARANTINE_KEPT = 10
_MONTH_FILE = re.compile(r"(\d{4})-(\d{2})\.jsonl")

# A kept receipt's place: its window's start as written (which sorts as the time does), and
# its wallet (receipts kept before the owner changed wallets stay apart).
Key = tuple[str, str]


def month_of(moment: datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}"


def _month_number(month: str) -> int:
    return int(month[:4]) * 12 + int(month[5:]) - 1


def _line(signed: SignedReceipt) -> str:
    return json.dumps(signed.to_json(), separators=(",", ":"), sort_keys=True)


def _key(signed: SignedReceipt) -> Key:
    return format_millis(signed.receipt.window_start), signed.receipt.wallet


def month_files(path: Path) -> list[str]:
    """The months kept, oldest first; none when there is no store. Changes nothing."""
    try:
        names = os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(name[:7] for name in names if _MONTH_FILE.fullmatch(name))


def _scan(path: Path, problems: list[str]) -> Iterator[tuple[str, SignedReceipt]]:
    """The receipts of one month's file with their lines, in its order; a line that is no
    receipt is noted in ``problems`` and passed over. Raises OSError or ValueError when the
    file as a whole cannot be read (FileNotFoundError when there is none)."""
    # O_NOFOLLOW and O_NONBLOCK: a symlink or a FIFO planted here is refused, not followed
    # or waited on.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
        data = handle.read(MAX_FILE_BYTES + 1)
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield line.decode("utf-8"), SignedReceipt.from_json(json.loads(line))
        except (ValueError, ProtocolError) as exc:  # UnicodeDecodeError is a ValueError
            problems.append(f"line {number}: {exc}")


def write_whole(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that a reader, or the file after a crash, is the
    old one or the new one whole: a temporary file beside it, flushed, then renamed."""
    temporary = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        fd = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode
        )
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    # The rename itself is durable only once the directory is.
    fd = os.open(path.parent, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _identity(path: Path) -> tuple[int, int, int] | None:
    """What changes whenever the file is replaced or written, to see another writer's."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


class ReceiptStore:
    """One worker's kept receipts, as the daemon and ``once`` keep them, one thread at a time.
    Nothing is created on disk before the first receipt is kept."""

    def __init__(
        self,
        path: Path,
        wallet: str,
        max_windows: int = MAX_WINDOWS,
        max_months: int = MAX_MONTHS,
    ):
        self.path = path
        self.wallet = wallet
        self.max_windows = max_windows
        self.max_months = max_months
        self._ready = False
        # The month in memory: its receipts' lines by window, and its file as last seen.
        self._month: str | None = None
        self._lines: dict[Key, str] = {}
        self._seen: tuple[int, int, int] | None = None
        self._oldest_kept: str | None = None  # the oldest month kept, once pruned
        self._pruned_for: str | None = None
        self._warned_full: set[str] = set()

    def keep(self, delivered: Iterable[tuple[bytes, object]]) -> int:
        """Keep the receipts the collector answered heartbeats with: pairs of the body sent
        and the receipt as answered (its JSON). One that is not for this wallet, or not for
        that body, is logged and left. Returns how many receipts were kept (a window's
        earlier one replaced counts as one). Raises OSError when the disk refuses."""
        by_month: dict[str, list[SignedReceipt]] = {}
        for signed in self._checked(delivered):
            by_month.setdefault(month_of(signed.receipt.window_start), []).append(signed)
        if not by_month:
            return 0
        kept = 0
        with self._locked():
            for month in sorted(by_month):
                kept += self._keep_in(month, by_month[month])
        return kept

    def _checked(self, delivered: Iterable[tuple[bytes, object]]) -> list[SignedReceipt]:
        found: list[SignedReceipt] = []
        refused: Counter[str] = Counter()
        for body, answered in delivered:
            try:
                signed = SignedReceipt.from_json(answered)
            except ProtocolError as exc:
                refused[f"it cannot be read ({exc})"] += 1
                continue
            receipt = signed.receipt
            if receipt.wallet != self.wallet:
                refused[f"it is for the wallet {receipt.wallet}, not {self.wallet}"] += 1
            elif receipt.heartbeat_sha256 != heartbeat_sha256(body):
                refused["its heartbeatSha256 is not that of the heartbeat sent"] += 1
            else:
                found.append(signed)
        for why, count in refused.items():
            # The heartbeat itself counted: only the collector's word for it is missing.
            log.warning(
                "a receipt from the collector was not kept (%d in this answer): %s", count, why
            )
        return found

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if not self._ready:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            remove_stale_temporaries(self.path)
            self._ready = True
        # The kernel lets go of a flock when its holder dies, a kill -9 included.
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _keep_in(self, month: str, receipts: list[SignedReceipt]) -> int:
        if self._pruned_for != month:
            self._prune(month)
        if self._oldest_kept is not None and month < self._oldest_kept:
            log.info(
                "receipts of %s are older than the %d months kept: not kept", month, self.max_months
            )
            return 0
        damaged = self._load(month)
        kept = sum(self._put(signed) for signed in receipts)
        excess = len(self._lines) - self.max_windows
        if excess > 0:
            for key in sorted(self._lines)[:excess]:
                del self._lines[key]
            if month not in self._warned_full:
                self._warned_full.add(month)
                log.warning(
                    "receipts of %s: %d windows kept, the most kept for a month; the oldest "
                    "are dropped from now on",
                    month,
                    self.max_windows,
                )
        if kept or damaged or excess > 0:
            lines = [self._lines[key] + "\n" for key in sorted(self._lines)]
            write_whole(self._file(month), "".join(lines).encode("utf-8"))
            self._seen = _identity(self._file(month))
        return kept

    def _file(self, month: str) -> Path:
        return self.path / f"{month}.jsonl"

    def _load(self, month: str) -> bool:
        """Hold ``month``'s receipts, read again when another writer changed its file since;
        True when the file was damaged (and moved aside: what could be read is held)."""
        file = self._file(month)
        seen = _identity(file)
        if month == self._month and seen == self._seen:
            return False
        self._month, self._lines, self._seen = month, {}, seen
        if seen is None:
            return False
        problems: list[str] = []
        try:
            for line, signed in _scan(file, problems):
                self._put(signed, line)
        except FileNotFoundError:  # replaced meanwhile by another writer: whole again
            return self._load(month)
        except (OSError, ValueError) as exc:
            problems.append(str(exc))
        if problems:
            self._quarantine(file, problems)
        return bool(problems)

    def _put(self, signed: SignedReceipt, line: str | None = None) -> bool:
        """Hold ``signed`` (read from ``line``) unless its window's receipt held already
        stands for it."""
        key = _key(signed)
        held = self._lines.get(key)
        if held is not None:
            earlier = SignedReceipt.from_json(json.loads(held))
            if latest_per_window([earlier, signed]) == [earlier]:
                return False
        self._lines[key] = line or _line(signed)
        return True

    def _quarantine(self, file: Path, problems: list[str]) -> None:
        aside = self.path / QUARANTINE
        shown = "; ".join(problems[:3]) + ("; …" if len(problems) > 3 else "")
        try:
            aside.mkdir(mode=0o700, exist_ok=True)
            target = aside / f"{file.name}.{time.time_ns()}"
            os.rename(file, target)
        except OSError as exc:
            log.error(
                "receipt file %s is damaged (%s) and cannot be moved aside (%s): "
                "rewriting it with the %d receipts that can be read",
                file,
                shown,
                exc.strerror,
                len(self._lines),
            )
            return
        log.error(
            "receipt file %s is damaged (%s): moved to %s; the %d receipts that can be "
            "read are kept",
            file,
            shown,
            target,
            len(self._lines),
        )
        # Bounded too: the newest few are enough to see what damaged them.
        by_age = sorted(aside.iterdir(), key=lambda p: p.name.rpartition(".")[2].zfill(20))
        for old in by_age[:-QUARANTINE_KEPT]:
            with contextlib.suppress(OSError):  # a directory set aside stays
                old.unlink()

    def _prune(self, month: str) -> None:
        """Delete the months older than the newest MAX_MONTHS (counting ``month``)."""
        months = month_files(self.path)
        newest = max([month, *months])
        number = _month_number(newest) - self.max_months + 1
        self._oldest_kept = f"{number // 12:04d}-{number % 12 + 1:02d}"
        for old in months:
            if old < self._oldest_kept:
                self._file(old).unlink(missing_ok=True)
                log.info("receipts of %s deleted: %d months are kept", old, self.max_months)
        self._pruned_for = month


@dataclass(frozen=True)
class Reading:
    """The kept receipts of one wallet over a period, as the ``receipts`` command reads them."""

    receipts: list[SignedReceipt]  # one per window, by window start
    other_wallets: int  # receipts kept for another wallet (before the owner changed it)
    problems: list[str]  # what could not be read, file by file


def read(path: Path, wallet: str, start: datetime, end: datetime) -> Reading:
    """The receipts kept for ``wallet`` whose window overlaps [start, end). Every month that
    begins before ``end`` is read (a window may have begun months before the period), one at
    a time; nothing is changed."""
    found: list[SignedReceipt] = []
    others = 0
    problems: list[str] = []
    for month in month_files(path):
        if month > month_of(end):
            break
        file = path / f"{month}.jsonl"
        noted: list[str] = []
        try:
            for _, signed in _scan(file, noted):
                r = signed.receipt
                # A window of no length at the period's start still shows the worker there.
                if not (r.window_start < end and (r.window_end > start or r.window_start >= start)):
                    continue
                if r.wallet != wallet:
                    others += 1
                else:
                    found.append(signed)
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            noted.append(str(exc))
        problems += [f"{file}: {problem}" for problem in noted]
    return Reading(latest_per_window(found), others, problems)
