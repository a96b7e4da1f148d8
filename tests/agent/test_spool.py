"""The on-disk spool: order, bound, restart, and whole entries only after a kill -9."""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from agent.spool import Spool, entry_names


def bodies(spool: Spool) -> list[bytes]:
    taken = []
    while (entry := spool.oldest()) is not None:
        taken.append(entry.body)
        spool.acknowledge(entry)
    return taken


def test_it_gives_entries_back_oldest_first(tmp_path):
    spool = Spool(tmp_path, max_entries=10)
    for i in range(3):
        spool.append(b"%d" % i)
    assert len(spool) == 3
    assert bodies(spool) == [b"0", b"1", b"2"]
    assert len(spool) == 0 and spool.oldest() is None


def test_a_restarted_spool_keeps_entries_and_their_order(tmp_path):
    first = Spool(tmp_path, max_entries=10)
    first.append(b"a")
    first.append(b"b")
    first.acknowledge(first.oldest())
    second = Spool(tmp_path, max_entries=10)
    second.append(b"c")
    assert bodies(second) == [b"b", b"c"]


def test_a_full_spool_drops_the_oldest_and_says_so(tmp_path, caplog):
    spool = Spool(tmp_path, max_entries=3)
    with caplog.at_level(logging.WARNING, logger="agent.spool"):
        for i in range(5):
            spool.append(b"%d" % i)
    assert bodies(spool) == [b"2", b"3", b"4"]
    assert "dropped the 1 oldest" in caplog.text


def test_an_interrupted_write_is_never_returned_and_cleaned_up_once_stale(tmp_path):
    Spool(tmp_path, max_entries=10).append(b"whole")
    stale = tmp_path / ".tmp-1-000000000002"
    stale.write_bytes(b'{"half')
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    # A young one may be another process's write in progress: it stays.
    young = tmp_path / ".tmp-2-000000000003"
    young.write_bytes(b'{"half')
    spool = Spool(tmp_path, max_entries=10)
    assert list(tmp_path.glob(".tmp-*")) == [young]
    assert bodies(spool) == [b"whole"]


def test_two_writers_on_one_spool_never_overwrite_each_other(tmp_path):
    daemon, once = Spool(tmp_path, max_entries=100), Spool(tmp_path, max_entries=100)
    for i in range(5):  # both start from the same next number
        daemon.append(b"daemon %d" % i)
        once.append(b"once %d" % i)
    taken = bodies(Spool(tmp_path, max_entries=100))
    assert sorted(taken) == sorted(
        [b"daemon %d" % i for i in range(5)] + [b"once %d" % i for i in range(5)]
    )
    assert [b for b in taken if b.startswith(b"daemon")] == [b"daemon %d" % i for i in range(5)]


def test_reading_the_spools_entries_changes_nothing(tmp_path):
    spool_dir = tmp_path / "spool"
    assert entry_names(spool_dir) == [] and not spool_dir.exists()
    Spool(spool_dir, max_entries=10).append(b"a")
    (spool_dir / ".tmp-9-000000000002").write_bytes(b"half")
    before = sorted(os.listdir(spool_dir))
    assert entry_names(spool_dir) == ["000000000001.json"]
    assert sorted(os.listdir(spool_dir)) == before


def _plant(kind: str, path):
    if kind == "directory":
        path.mkdir()
    elif kind == "symlink":
        path.symlink_to("/etc/hostname")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "not utf-8":
        path.write_bytes(b"\xff\xfe not text")


@pytest.mark.parametrize("kind", ["directory", "symlink", "fifo", "not utf-8"])
def test_an_entry_that_cannot_be_read_is_quarantined_once_and_the_rest_delivered(
    tmp_path, caplog, kind
):
    spool = Spool(tmp_path, max_entries=10)
    spool.append(b"first")
    _plant(kind, tmp_path / "000000000002.json")
    spool = Spool(tmp_path, max_entries=10)
    spool.append(b"third")
    with caplog.at_level(logging.ERROR, logger="agent.spool"):
        assert bodies(spool) == [b"first", b"third"]
        assert bodies(spool) == []
    assert caplog.text.count("000000000002.json cannot be read") == 1
    assert os.listdir(tmp_path / "quarantine") == ["000000000002.json"]


def test_an_entry_that_cannot_be_moved_aside_is_skipped_and_named_once(tmp_path, caplog):
    spool = Spool(tmp_path, max_entries=10)
    (tmp_path / "quarantine").write_text("a file where the folder would go")
    (tmp_path / "000000000001.json").mkdir()
    spool = Spool(tmp_path, max_entries=10)
    spool.append(b"second")
    with caplog.at_level(logging.ERROR, logger="agent.spool"):
        assert bodies(spool) == [b"second"]
        assert bodies(spool) == []
    assert caplog.text.count("nor moved aside") == 1
    assert len(spool) == 0


WRITER = """
import json, sys
from pathlib import Path
from agent.spool import Spool, entry_names
spool = Spool(Path(sys.argv[1]), max_entries=100_000)
i = len(spool)
print("ready", flush=True)
while True:
    spool.append(json.dumps({"n": i, "pad": "x" * 200_000}).encode())
    i += 1
"""


@pytest.mark.parametrize("round_", range(5))
def test_a_kill_9_mid_write_leaves_only_whole_entries_in_order(tmp_path, round_):
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline().strip() == "ready"
        # Wait until it has written something, then kill it wherever it is.
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob("[0-9]*.json")) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.01 * round_)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    finally:
        writer.stdout.close()
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    numbers = [json.loads(body)["n"] for body in bodies(Spool(tmp_path, max_entries=100_000))]
    assert numbers, "the writer was killed before it wrote anything"
    assert numbers == list(range(len(numbers)))
