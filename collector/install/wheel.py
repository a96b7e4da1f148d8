"""The wheel of the running code, built in memory, and the lock of the agent's dependencies,
for the install script to fetch: the script carries the sha256 of both and installs nothing
else.

The collector serves the agent it was released with, so a worker installs exactly the
protocol the collector speaks. The wheel is assembled from the imported packages and the
installed distribution's own metadata (which is what ``pip install`` of the project wrote,
editable installs included), so serving it needs no build tools and no network. It carries
the install script, the lock and the units as data files, so a collector installed from it
can serve them too.
"""

import base64
import hashlib
import importlib.metadata
import io
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import agent
import collector
import protocol
from collector.install import assets

DISTRIBUTION = "tassium"
PACKAGES = (protocol, agent, collector)
# The code, and the dashboard's templates (collector/templates) that a collector installed
# from the wheel renders.
SOURCES = ("*.py", "*.html")
# A fixed timestamp makes the wheel's bytes (and so its hash) depend on the code alone.
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)
# The agent's dependencies pinned with their hashes, served beside the wheel under this name.
LOCK_FILENAME = "agent-requirements.txt"


@dataclass(frozen=True)
class Package:
    """A file served at ``/packages/<filename>``."""

    filename: str
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def build() -> Package:
    dist = importlib.metadata.distribution(DISTRIBUTION)
    info = f"{DISTRIBUTION}-{dist.version}.dist-info"
    files: dict[str, bytes] = {}
    for package in PACKAGES:
        root = Path(package.__file__).parent
        for path in sorted(p for pattern in SOURCES for p in root.rglob(pattern)):
            if "__pycache__" not in path.parts:
                files[f"{root.name}/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    # A checkout's egg-info (found first when the collector runs from the checkout) calls
    # the same document PKG-INFO.
    metadata = dist.read_text("METADATA") or _required(dist, "PKG-INFO")
    files[f"{info}/METADATA"] = metadata.encode()
    # Wheel data files: pip installs them under the environment's prefix, where a collector
    # installed from this wheel finds them again.
    for relative in assets.ALL:
        data = f"{DISTRIBUTION}-{dist.version}.data/data/{assets.SHARE.as_posix()}/{relative}"
        files[data] = assets.read(relative).encode()
    files[f"{info}/entry_points.txt"] = _required(dist, "entry_points.txt").encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\n"
        b"Generator: tassium-collector\n"
        b"Root-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )
    files[f"{info}/RECORD"] = _record(files, f"{info}/RECORD").encode()

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, _ZIP_TIME)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
    return Package(f"{DISTRIBUTION}-{dist.version}-py3-none-any.whl", buffer.getvalue())


def _required(dist: importlib.metadata.Distribution, name: str) -> str:
    text = dist.read_text(name)
    if text is None:
        raise RuntimeError(f"the installed {DISTRIBUTION} distribution has no {name}")
    return text


def _record(files: dict[str, bytes], record_name: str) -> str:
    """RECORD lists every file with its urlsafe, unpadded sha256, as the wheel spec asks."""
    lines = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{name},sha256={digest},{len(data)}")
    lines.append(f"{record_name},,")
    return "\n".join(lines) + "\n"


_cache: dict[str, Package] = {}
_building = threading.Lock()


def _kept(key: str, make: Callable[[], Package]) -> Package:
    with _building:
        if key not in _cache:
            _cache[key] = make()
        return _cache[key]


def current() -> Package:
    """The wheel, built on first use and kept: the code a process runs does not change."""
    return _kept("wheel", build)


def lock() -> Package:
    """The lock (scripts/lock-agent writes it), read once like the wheel is built once: the
    sha256 in a script this process serves is that of the file it serves."""
    return _kept("lock", lambda: Package(LOCK_FILENAME, assets.read(assets.AGENT_LOCK).encode()))


def served(filename: str) -> Package | None:
    return next((p for p in (current(), lock()) if p.filename == filename), None)
