"""Decoded objects of a mirror, decoded once per revision.

The agent looks pods up for every local endpoint on every run of its label and identity controllers,
which every pod event in the cluster triggers: decoding each pod's JSON anew made that O(endpoints)
per event. This keeps the last decoded object per key with the ``mod_revision`` it came from, so an
unchanged pod costs a dict lookup, and the same object comes back (callers may compare by ``is``).
Objects handed out are shared: read them, never change them.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from membrane.store.mirror import Mirror


class DecodedObjects:
    def __init__(self, mirror: Mirror) -> None:
        self._mirror = mirror
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, dict[str, Any]]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        kv = self._mirror.get(key)
        if kv is None:
            with self._lock:
                self._cache.pop(key, None)
            return None
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] == kv.mod_revision:
            return hit[1]
        obj = json.loads(kv.value)
        with self._lock:
            self._cache[key] = (kv.mod_revision, obj)
            if len(self._cache) > 2 * len(self._mirror) + 64:  # keys gone from the mirror
                for stale in [k for k in self._cache if self._mirror.get(k) is None]:
                    del self._cache[stale]
        return obj
