"""collector/uptime/keys.py: a heartbeat's key is read from this process's cache, and the worker row
in the heartbeat's own transaction still decides: a key replaced elsewhere (another process,
another node) is never honoured for a heartbeat."""

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.store.models import Worker, WorkerMetric
from collector.uptime.keys import CachedKey, KeyCache
from tests.factories import FakeWorker, minutes_ago


def test_the_cache_forgets_the_oldest_beyond_its_size_and_serves_by_age():
    cache = KeyCache(max_entries=2)
    keys = {a: CachedKey(f"key-{a}", Ed25519PrivateKey.generate().public_key()) for a in "abc"}
    for address, key in keys.items():
        cache.put(address, key)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, keys["b"], keys["c"])
    # A ping asks for a recent copy; a heartbeat takes any (its transaction checks it).
    assert (cache.get("b", max_age=0.0), cache.get("b", max_age=60.0)) == (None, keys["b"])


def test_a_key_replaced_elsewhere_is_refused_though_this_process_cached_it(client, dbconn):
    worker = FakeWorker()
    assert worker.enroll(client).status_code == 201
    assert worker.beat(client, minutes_ago(10)).status_code == 200  # its key is now cached

    # Another collector process enrolls a new key for the wallet (with a token).
    old, worker.key = worker.key, Ed25519PrivateKey.generate()
    Worker.update(public_key=worker.public_key).where(
        Worker.wallet_address == worker.wallet
    ).execute()

    thief = FakeWorker(worker.wallet)
    thief.key = old
    refused = thief.beat(client, minutes_ago(8))
    assert refused.status_code == 401
    assert WorkerMetric.select().count() == 1  # nothing written

    assert worker.beat(client, minutes_ago(6)).status_code == 200
    assert WorkerMetric.select().count() == 2
