"""Enrolled public keys, as this process last read them: a heartbeat's signature is checked
without a query. The key stays the truth in the database: a heartbeat verified with a cached
key is applied only if the worker row, read and locked in the heartbeat's own transaction,
still holds that key (collector/windows.py), so a key replaced through another process is
never honoured for a heartbeat. A ping, which has no transaction, may be verified with a
replaced key for at most ``TTL`` seconds."""

import threading
import time
from collections import OrderedDict

TTL = 60.0
MAX_ENTRIES = 100_000  # about 15 MB at most, a fleet of a million workers notwithstanding


class KeyCache:
    def __init__(self, max_entries: int = MAX_ENTRIES, ttl: float = TTL):
        self.max_entries = max_entries
        self.ttl = ttl
        self._keys: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, address: str) -> str | None:
        with self._lock:
            found = self._keys.get(address)
            if found is None:
                return None
            key, read_at = found
            if time.monotonic() - read_at > self.ttl:
                del self._keys[address]
                return None
            self._keys.move_to_end(address)
            return key

    def put(self, address: str, key: str) -> None:
        with self._lock:
            self._keys[address] = (key, time.monotonic())
            self._keys.move_to_end(address)
            while len(self._keys) > self.max_entries:
                self._keys.popitem(last=False)

    def forget(self, address: str) -> None:
        with self._lock:
            self._keys.pop(address, None)
