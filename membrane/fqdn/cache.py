"""The DNS cache: what each endpoint resolved (name -> IPs, each with its own expiry), cilium-semantics §4.2.

An answer's IPs live for ``max(TTL, min_ttl)`` seconds from when the answer passed the proxy; a new
answer for the same name refreshes them. One name keeps at most ``max_ips_per_name`` IPs per endpoint,
the least recently seen evicted first (``tofqdns-endpoint-max-ip-per-hostname``). An expired IP that a
connection still uses is kept as a *zombie* until the connection is gone: it no longer counts for new
lookups' answers but stays selected, so the established connection is not cut (Cilium's deferred
connection deletes). Names are stored lower case with the trailing dot.

Pure: times come from the caller (monotonic seconds), nothing here reads a clock or the kernel.
"""

from __future__ import annotations

import functools
import ipaddress
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def _locked(fn: F) -> F:
    """The DNS proxy writes while Hubble and the CLI read: one lock per cache."""
    @functools.wraps(fn)
    def wrapper(self: DNSCache, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return fn(self, *args, **kwargs)
    return wrapper  # type: ignore[return-value]

DEFAULT_MIN_TTL = 0  # tofqdns-min-ttl (Cilium ≥ 1.x default; older releases used 3600)
DEFAULT_MAX_IPS_PER_NAME = 1000  # tofqdns-endpoint-max-ip-per-hostname


def canonical_name(name: str) -> str:
    """``One.One.one.one`` -> ``one.one.one.one.``"""
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


@dataclass(frozen=True)
class CacheEntry:
    """One IP an endpoint learned for a name."""

    endpoint: int
    name: str
    ip: str
    ttl: int  # the TTL the answer carried
    seen: float  # when the latest answer naming it passed
    expires: float  # seen + max(ttl, min_ttl)
    zombie: bool = False  # expired, kept while a connection uses it


class DNSCache:
    """Per-endpoint name -> IP entries; ``names_of(ip)`` answers across every endpoint."""

    def __init__(self, min_ttl: int = DEFAULT_MIN_TTL, max_ips_per_name: int = DEFAULT_MAX_IPS_PER_NAME) -> None:
        if min_ttl < 0:
            raise ValueError(f"tofqdns-min-ttl must be >= 0, got {min_ttl}")
        if max_ips_per_name < 1:
            raise ValueError(f"tofqdns-endpoint-max-ip-per-hostname must be >= 1, got {max_ips_per_name}")
        self.min_ttl = min_ttl
        self.max_ips_per_name = max_ips_per_name
        self._entries: dict[tuple[int, str], dict[str, CacheEntry]] = {}  # (ep, name) -> ip -> entry
        self._by_ip: dict[str, set[tuple[int, str]]] = {}  # ip -> {(ep, name)}
        self._lock = threading.RLock()

    # ---- learning ---------------------------------------------------------------------------------
    @_locked
    def update(self, endpoint: int, name: str, ips: Iterable[str], ttl: int, now: float) -> bool:
        """Record an answer; True when an IP is new for the name (the selections may change)."""
        name = canonical_name(name)
        lifetime = max(int(ttl), self.min_ttl)
        slot = self._entries.setdefault((endpoint, name), {})
        added = False
        for raw in ips:
            ip = str(ipaddress.ip_address(raw))
            old = slot.pop(ip, None)  # re-inserted last: dict order is least recently seen first
            slot[ip] = CacheEntry(endpoint, name, ip, int(ttl), now, now + lifetime)
            if old is None:
                added = True
                self._by_ip.setdefault(ip, set()).add((endpoint, name))
        while len(slot) > self.max_ips_per_name:
            oldest = next(iter(slot))
            self._drop(endpoint, name, oldest)
        if not slot:
            del self._entries[(endpoint, name)]
        return added

    def _drop(self, endpoint: int, name: str, ip: str) -> None:
        slot = self._entries.get((endpoint, name))
        if slot is None or slot.pop(ip, None) is None:
            return
        if not slot:
            del self._entries[(endpoint, name)]
        users = self._by_ip.get(ip)
        if users is not None:
            users.discard((endpoint, name))
            if not users:
                del self._by_ip[ip]

    @_locked
    def expire(self, now: float, in_use: Callable[[str], bool] = lambda _ip: False) -> list[CacheEntry]:
        """Remove the entries whose time is up; those whose IP ``in_use`` says a connection still uses
        become zombies instead (and go once it no longer does). Returns what was removed."""
        removed: list[CacheEntry] = []
        for slot in list(self._entries.values()):
            for entry in list(slot.values()):
                if entry.expires > now:
                    continue
                if in_use(entry.ip):
                    if not entry.zombie:
                        slot[entry.ip] = CacheEntry(entry.endpoint, entry.name, entry.ip, entry.ttl, entry.seen,
                                                    entry.expires, zombie=True)
                    continue
                self._drop(entry.endpoint, entry.name, entry.ip)
                removed.append(entry)
        return removed

    @_locked
    def forget_endpoint(self, endpoint: int) -> list[CacheEntry]:
        """Drop an endpoint's entries (it was deleted)."""
        gone = [e for (ep, _n), slot in self._entries.items() if ep == endpoint for e in slot.values()]
        for e in gone:
            self._drop(e.endpoint, e.name, e.ip)
        return gone

    @_locked
    def clear(self) -> int:
        """Forget every entry (``fqdn cache clean``); returns how many there were."""
        n = sum(len(slot) for slot in self._entries.values())
        self._entries.clear()
        self._by_ip.clear()
        return n

    # ---- questions ------------------------------------------------------------------------------------
    @_locked
    def names_of(self, ip: str) -> set[str]:
        """Every name some endpoint resolved to ``ip`` (zombies included: they are still selected)."""
        return {name for _ep, name in self._by_ip.get(ip, ())}

    @_locked
    def ips(self) -> set[str]:
        return set(self._by_ip)

    @_locked
    def lookup(self, name: str, endpoint: int | None = None) -> set[str]:
        """The live (non-zombie) IPs of ``name``, for one endpoint or all of them."""
        name = canonical_name(name)
        return {e.ip for (ep, n), slot in self._entries.items() if n == name and endpoint in (None, ep)
                for e in slot.values() if not e.zombie}

    @_locked
    def entries(self, endpoint: int | None = None) -> list[CacheEntry]:
        """Every entry (of one endpoint), by endpoint, name and IP."""
        out = [e for (ep, _n), slot in self._entries.items() if endpoint in (None, ep) for e in slot.values()]
        return sorted(out, key=lambda e: (e.endpoint, e.name, _ip_key(e.ip)))

    @_locked
    def __len__(self) -> int:
        return sum(len(slot) for slot in self._entries.values())


def _ip_key(ip: str) -> tuple[int, int]:
    addr = ipaddress.ip_address(ip)
    return addr.version, int(addr)


def cache_rows(cache: DNSCache, now: float, wall_now: float, endpoint: int | None = None) -> list[dict[str, object]]:
    """``fqdn cache list`` rows: one per endpoint, name, source and expiry, with the IPs comma-joined.

    ``source`` is ``lookup`` for live entries and ``connection`` for zombies (kept for a connection);
    ``expiration`` is wall-clock seconds (``now`` is the monotonic time the entries were written with).
    """
    groups: dict[tuple[int, str, str, int, float], list[str]] = {}
    for e in cache.entries(endpoint):
        key = (e.endpoint, e.name, "connection" if e.zombie else "lookup", e.ttl, e.expires)
        groups.setdefault(key, []).append(e.ip)
    return [{"endpoint": ep, "source": source, "fqdn": name, "ttl": ttl,
             "expiration": wall_now + (expires - now), "ips": ips}
            for (ep, name, source, ttl, expires), ips in groups.items()]
