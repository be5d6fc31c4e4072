"""Proxy port allocation: one port of 10000-20000 per redirect (endpoint, direction, protocol, port)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable


class PortAllocator:
    def __init__(self, first: int = 10000, last: int = 20000) -> None:
        self.first, self.last = first, last
        self._by_key: dict[Hashable, int] = {}
        self._next = first

    def get(self, key: Hashable) -> int:
        port = self._by_key.get(key)
        if port is not None:
            return port
        used = set(self._by_key.values())
        for _ in range(self.last - self.first + 1):
            candidate, self._next = self._next, self._next + 1 if self._next < self.last else self.first
            if candidate not in used:
                self._by_key[key] = candidate
                return candidate
        raise RuntimeError(f"no free proxy port in {self.first}-{self.last}")

    def retain(self, keys: Iterable[Hashable]) -> list[int]:
        """Keep only ``keys``; returns the ports released."""
        keep = set(keys)
        gone = [k for k in self._by_key if k not in keep]
        return [self._by_key.pop(k) for k in gone]

    def items(self) -> dict[Hashable, int]:
        return dict(self._by_key)
