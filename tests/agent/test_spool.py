"""The on-disk spool: order, bound, restart, and whole entries only after a kill -9."""

import json
import logging
import signal
import subprocess
import sys
import time

import pytest

from agent.spool import Spool


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


def test_an_interrupted_write_is_cleaned_up_and_never_returned(tmp_path):
    Spool(tmp_path, max_entries=10).append(b"whole")
    (tmp_path / ".tmp-000000000002.json").write_bytes(b'{"half')
    spool = Spool(tmp_path, max_entries=10)
    assert not list(tmp_path.glob(".tmp-*"))
    assert bodies(spool) == [b"whole"]


WRITER = """
import json, sys
from pathlib import Path
from agent.spool import Spool
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
