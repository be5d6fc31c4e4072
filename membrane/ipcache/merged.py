"""``merge`` kept current by changes: what one published entry changes costs that entry's prefix.

The ipcache controller of every agent ran ``merge`` over every pod IP in the cluster each time any pod
anywhere published or withdrew its entry: O(n) per pod, O(n²) per burst. ``MergedIPCache`` holds the
published (kvstore) entries by their store key and the other sources (world default, node IPs, CIDR
prefixes of policy) as one list. ``put`` of one published entry re-decides its prefixes only;
``set_others`` re-decides the prefixes the other sources name (a handful, and only when they change).
The choice per prefix is ``merge``'s: the highest ``Source`` rank wins, the first of equals stays.
"""

from __future__ import annotations

from membrane.ipcache.cache import IPCacheEntry, Network, _rank, world_entries


class MergedIPCache:
    def __init__(self, dual_stack: bool = False, world_default: bool = True) -> None:
        self._world = world_entries(dual_stack) if world_default else []
        self._published: dict[str, IPCacheEntry] = {}  # store key -> entry
        self._by_prefix: dict[Network, dict[str, IPCacheEntry]] = {}  # prefix -> store key -> entry
        self._others: list[IPCacheEntry] = []
        self._others_by_prefix: dict[Network, list[IPCacheEntry]] = {}
        self._chosen: dict[Network, IPCacheEntry] = {}
        self.set_others([])

    def entries(self) -> dict[Network, IPCacheEntry]:
        """The merged cache: prefix -> the entry that wins it (do not modify)."""
        return self._chosen

    def published_keys(self) -> set[str]:
        return set(self._published)

    def put(self, key: str, entry: IPCacheEntry | None) -> set[Network]:
        """Set (None: remove) the published entry stored under ``key``; returns the prefixes whose
        winning entry changed."""
        touched = set()
        old = self._published.pop(key, None)
        if old is not None:
            touched.add(old.prefix)
            held = self._by_prefix[old.prefix]
            del held[key]
            if not held:
                del self._by_prefix[old.prefix]
        if entry is not None:
            touched.add(entry.prefix)
            self._published[key] = entry
            self._by_prefix.setdefault(entry.prefix, {})[key] = entry
        return self._decide(touched)

    def set_others(self, entries: list[IPCacheEntry]) -> set[Network]:
        """Replace the sources other than the published entries (node IPs, CIDR prefixes; the world default
        is added here); returns the prefixes whose winning entry changed."""
        entries = [*self._world, *entries]
        if entries == self._others and self._chosen:
            return set()
        touched = set(self._others_by_prefix) | {e.prefix for e in entries}
        self._others = entries
        self._others_by_prefix = {}
        for e in entries:
            self._others_by_prefix.setdefault(e.prefix, []).append(e)
        return self._decide(touched)

    def _decide(self, prefixes: set[Network]) -> set[Network]:
        changed = set()
        for prefix in prefixes:
            best: IPCacheEntry | None = None
            # merge's input order: world first, the published entries by key, then the other sources
            published = self._by_prefix.get(prefix, {})
            others = self._others_by_prefix.get(prefix, [])
            world = [e for e in others if e in self._world]
            rest = [e for e in others if e not in self._world]
            for entry in (*world, *(published[k] for k in sorted(published)), *rest):
                if best is None or _rank(entry) > _rank(best):
                    best = entry
            if best is None:
                if self._chosen.pop(prefix, None) is not None:
                    changed.add(prefix)
            elif self._chosen.get(prefix) != best:
                self._chosen[prefix] = best
                changed.add(prefix)
        return changed
