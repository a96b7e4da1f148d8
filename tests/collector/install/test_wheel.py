"""collector/install/wheel.py and ``/packages/<name>``: the agent wheel the setup script installs,
built in memory from the running code (it must be a wheel pip accepts, and the same bytes
every time), and the lock of the agent's dependencies served beside it."""

import base64
import configparser
import csv
import hashlib
import importlib.metadata
import io
import os
import subprocess
import sys
import time
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from collector.install import wheel

ROOT = Path(__file__).parents[3]
PACKAGES = ("protocol", "agent", "collector")
LOCK = ROOT / "packaging" / "agent-requirements.txt"


@pytest.fixture
def version() -> str:
    return importlib.metadata.version("tassium")


@pytest.fixture
def filename(version) -> str:
    return f"tassium-{version}-py3-none-any.whl"


@pytest.fixture
def archive() -> zipfile.ZipFile:
    with zipfile.ZipFile(io.BytesIO(wheel.build().content)) as opened:
        yield opened


def dist_info(archive: zipfile.ZipFile, name: str, version: str) -> str:
    return archive.read(f"tassium-{version}.dist-info/{name}").decode()


# --- the route ------------------------------------------------------------------------------


def test_the_wheel_is_served_with_an_etag(client, filename):
    response = client.get(f"/packages/{filename}")
    assert response.status_code == 200
    assert response.data == wheel.current().content
    assert response.mimetype == "application/octet-stream"
    assert filename in response.headers["Content-Disposition"]
    etag = response.headers["ETag"]
    assert etag == f'"{hashlib.sha256(response.data).hexdigest()}"'

    cached = client.get(f"/packages/{filename}", headers={"If-None-Match": etag})
    assert (cached.status_code, cached.data) == (304, b"")
    stale = client.get(f"/packages/{filename}", headers={"If-None-Match": '"0123"'})
    assert (stale.status_code, stale.data) == (200, response.data)


def test_the_lock_is_served_beside_it_with_an_etag(client):
    response = client.get("/packages/agent-requirements.txt")
    assert response.status_code == 200
    assert response.data == LOCK.read_bytes() == wheel.lock().content
    assert "agent-requirements.txt" in response.headers["Content-Disposition"]
    etag = response.headers["ETag"]
    assert etag == f'"{hashlib.sha256(LOCK.read_bytes()).hexdigest()}"'
    cached = client.get("/packages/agent-requirements.txt", headers={"If-None-Match": etag})
    assert (cached.status_code, cached.data) == (304, b"")


def test_the_lock_served_is_the_one_read_first(monkeypatch):
    # A script served earlier carries the sha256 of the lock read then: a changed file on disk
    # (an upgrade under a running collector) must not make the two disagree.
    served = wheel.lock()
    monkeypatch.setattr(wheel.assets, "read", lambda relative: "changed\n")
    assert wheel.lock() is served
    assert wheel.served("agent-requirements.txt") is served


@pytest.mark.parametrize(
    "name",
    [
        "agent-requirements.txt.bak",
        "AGENT-REQUIREMENTS.TXT",
        "packaging/agent-requirements.txt",
        "tassium-0.0.1-py3-none-any.whl",
        "tassium-99.0.0-py3-none-any.whl",
        "{filename}.bak",
        "{filename}%00",
        "TASSIUM-{version}-py3-none-any.whl",
        "tassium-{version}-py3-none-any.zip",
        "..%2fx",
        "../x",
        "%2e%2e%2fsetup.sh",
        "",
    ],
)
def test_any_other_name_is_not_found(client, name, filename, version):
    response = client.get("/packages/" + name.format(filename=filename, version=version))
    assert response.status_code == 404
    assert response.is_json and response.json["error"]


def test_the_not_found_error_names_what_is_served(client, filename):
    response = client.get("/packages/tassium-0.0.1-py3-none-any.whl")
    assert response.status_code == 404
    assert filename in response.json["error"]
    assert "agent-requirements.txt" in response.json["error"]


# --- the wheel ------------------------------------------------------------------------------


def test_the_filename_is_the_wheel_name_of_the_installed_version(filename):
    assert wheel.build().filename == wheel.current().filename == filename


def test_it_is_a_valid_zip_whose_record_matches_every_file(archive, version):
    assert archive.testzip() is None
    record_name = f"tassium-{version}.dist-info/RECORD"
    rows = list(csv.reader(io.StringIO(archive.read(record_name).decode())))
    assert [row[0] for row in rows].count(record_name) == 1
    assert sorted(row[0] for row in rows) == sorted(archive.namelist())
    for path, digest, size in rows:
        if path == record_name:
            assert (digest, size) == ("", "")
            continue
        data = archive.read(path)
        expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        assert digest == "sha256=" + expected.decode(), path
        assert int(size) == len(data), path


def test_its_metadata_names_tassium_at_the_installed_version(archive, version):
    metadata = Parser().parsestr(dist_info(archive, "METADATA", version))
    assert (metadata["Name"], metadata["Version"]) == ("tassium", version)
    assert metadata["Metadata-Version"]
    assert "agent" in metadata.get_all("Provides-Extra")

    entry_points = configparser.ConfigParser()
    entry_points.read_string(dist_info(archive, "entry_points.txt", version))
    assert entry_points["console_scripts"]["tassium-agent"] == "agent.cli:main"

    spec = Parser().parsestr(dist_info(archive, "WHEEL", version))
    assert spec["Wheel-Version"] == "1.0"
    assert spec["Root-Is-Purelib"] == "true"
    assert spec.get_all("Tag") == ["py3-none-any"]


def test_it_holds_exactly_the_packages_source(archive):
    names = archive.namelist()
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    code = [n for n in names if ".dist-info/" not in n and ".data/" not in n]
    assert {n.split("/")[0] for n in code} == set(PACKAGES)
    source = {
        path.relative_to(ROOT).as_posix(): path.read_bytes()
        for package in PACKAGES
        for pattern in wheel.SOURCES
        for path in (ROOT / package).rglob(pattern)
        if "__pycache__" not in path.parts
    }
    assert "protocol/heartbeat.py" in source and "agent/cli.py" in source
    assert "collector/templates/dashboard/page.html" in source
    assert {n: archive.read(n) for n in code} == source
    for info in archive.infolist():
        assert (info.external_attr >> 16) & 0o777 == 0o644, info.filename


def test_it_carries_the_setup_script_the_lock_and_units_as_data_files(archive, version):
    data = f"tassium-{version}.data/data/share/tassium/"
    carried = {n.removeprefix(data): archive.read(n) for n in archive.namelist() if ".data/" in n}
    assert carried == {
        relative: (ROOT / relative).read_bytes()
        for relative in (
            "packaging/setup.sh",
            "packaging/agent-requirements.txt",
            "systemd/tassium-agent.service",
            "systemd/tassium-collector.service",
        )
    }


def test_building_twice_gives_the_same_bytes(monkeypatch, tmp_path):
    first = wheel.build()
    # A year later, and in a process with another hash seed: still the same bytes.
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 365 * 24 * 3600)
    assert wheel.build().content == first.content
    monkeypatch.undo()
    other = subprocess.run(
        [sys.executable, "-c", "from collector.install import wheel; print(wheel.build().sha256)"],
        cwd=tmp_path,
        # The same sys.path as this process, so the same metadata is found first.
        env={**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == first.sha256 == hashlib.sha256(first.content).hexdigest()


def test_current_keeps_the_wheel_it_built():
    assert wheel.current() is wheel.current()
    assert wheel.current().content == wheel.build().content


def test_pip_installs_it_and_the_agent_imports_from_it(tmp_path, filename, version):
    path = tmp_path / filename
    path.write_bytes(wheel.build().content)
    target = tmp_path / "target"
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (target / "bin" / "tassium-agent").is_file()

    (dist,) = importlib.metadata.distributions(path=[str(target)])
    assert (dist.name, dist.version) == ("tassium", version)
    (script,) = dist.entry_points.select(group="console_scripts", name="tassium-agent")
    assert script.value == "agent.cli:main"

    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import agent.cli, protocol.heartbeat; "
        "print(agent.cli.__file__); print(protocol.heartbeat.__file__)"
    )
    imported = subprocess.run(
        [sys.executable, "-I", "-c", code, str(target)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.returncode == 0, imported.stderr
    for module_file in imported.stdout.splitlines():
        assert Path(module_file).is_relative_to(target), module_file
    assert len(imported.stdout.splitlines()) == 2


# --- where the metadata comes from ----------------------------------------------------------


def test_a_checkout_egg_info_first_on_sys_path_gives_its_pkg_info(monkeypatch, tmp_path, version):
    """Run from a checkout, ``pip install -e .``'s tassium.egg-info is found before the
    installed dist-info; it names the metadata document PKG-INFO, not METADATA."""
    info = tmp_path / "tassium.egg-info"
    info.mkdir()
    pkg_info = f"Metadata-Version: 2.1\nName: tassium\nVersion: {version}\nSummary: checkout\n"
    (info / "PKG-INFO").write_text(pkg_info)
    (info / "entry_points.txt").write_text("[console_scripts]\ntassium-agent = agent.cli:main\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with zipfile.ZipFile(io.BytesIO(wheel.build().content)) as built:
        assert dist_info(built, "METADATA", version) == pkg_info
        assert "tassium-agent = agent.cli:main" in dist_info(built, "entry_points.txt", version)
