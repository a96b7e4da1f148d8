"""Enrolled public keys, as this process last read them: a heartbeat's signature is checked
without a query. The key stays the truth in the database: a heartbeat verified with a cached
key is applied only if the worker row, read and locked in the heartbeat's own transaction,
still holds that key (collector/uptime/windows.py), so a key replaced through another process is
never honoured for a heartbeat, however old the cached copy. A ping, which has no
transaction, trusts a copy at most ``PING_MAX_AGE`` seconds old."""

import threading
import time
from collections import OrderedDict
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from collector.store.db import database

PING_MAX_AGE = 60.0


class CachedKey(NamedTuple):
    text: str  # as the worker row holds it
    public_key: Ed25519PublicKey  # decoded and checked once, not at every verification


class KeyCache:
    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._keys: OrderedDict[str, tuple[CachedKey, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, address: str, *, max_age: float | None = None) -> CachedKey | None:
        """The cached key, if read at most ``max_age`` seconds ago (any age: None)."""
        with self._lock:
            found = self._keys.get(address)
            if found is None:
                return None
            key, read_at = found
            if max_age is not None and time.monotonic() - read_at > max_age:
                return None
            self._keys.move_to_end(address)
            return key

    def put(self, address: str, key: CachedKey) -> None:
        with self._lock:
            self._keys[address] = (key, time.monotonic())
            self._keys.move_to_end(address)
            while len(self._keys) > self.max_entries:
                self._keys.popitem(last=False)

    def forget(self, address: str) -> None:
        with self._lock:
            self._keys.pop(address, None)


def enrolled_key(address: str) -> str | None:
    """The worker's enrolled key as the table holds it (None: no such worker, or none
    enrolled). Written out, not composed by the query builder: a key missing from the
    cache is read on the heartbeat's hot path."""
    row = database.execute_sql(
        f"SELECT public_key FROM workers WHERE wallet_address = {database.param}",  # noqa: S608
        (address,),
    ).fetchone()
    return row[0] if row is not None and row[0] else None
