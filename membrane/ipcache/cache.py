"""IP/prefix -> identity entries, merged by source precedence, with longest-prefix lookup.

Precedence when two sources claim the same prefix (highest wins): local endpoints > node IPs >
endpoints learned from the kvstore > CIDR prefixes used by policy > the world default
(``0.0.0.0/0`` and ``::/0`` -> 2, or 9/10 in dual-stack). Node IPs are host (1) on the own node and
remote-node (6) elsewhere.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

HOST_IDENTITY = 1
WORLD_IDENTITY = 2
REMOTE_NODE_IDENTITY = 6
WORLD_IPV4_IDENTITY = 9
WORLD_IPV6_IDENTITY = 10


class Source(IntEnum):
    """Where an entry came from; a higher value wins a conflict on the same prefix."""

    WORLD = 10
    CIDR = 20
    KVSTORE = 30
    NODE = 40
    LOCAL = 50


def parse_prefix(text: str) -> Network:
    """``10.0.1.5`` -> ``10.0.1.5/32``; host bits of a prefix are cleared."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as err:
        raise ValueError(f"ipcache: invalid IP or prefix {text!r}: {err}") from None


@dataclass(frozen=True)
class IPCacheEntry:
    """One prefix's identity, owning node and tunnel endpoint ("" when reached without a tunnel)."""

    prefix: Network
    identity: int
    source: Source = Source.KVSTORE
    node: str = ""
    tunnel_endpoint: str = ""
    encrypt_key: int = 0

    @classmethod
    def of(cls, prefix: str, identity: int, source: Source = Source.KVSTORE, node: str = "",
           tunnel_endpoint: str = "", encrypt_key: int = 0) -> IPCacheEntry:
        if identity < 0:
            raise ValueError(f"ipcache {prefix}: identity must be non-negative, got {identity}")
        if tunnel_endpoint:
            ipaddress.ip_address(tunnel_endpoint)
        return cls(parse_prefix(prefix), identity, source, node, tunnel_endpoint, encrypt_key)

    @property
    def key(self) -> str:
        return str(self.prefix)

    def to_dict(self) -> dict[str, Any]:
        """The stored value of ``ipcache/<prefix>`` (the prefix is the key)."""
        out: dict[str, Any] = {"identity": self.identity}
        if self.node:
            out["node"] = self.node
        if self.tunnel_endpoint:
            out["tunnelEndpoint"] = self.tunnel_endpoint
        if self.encrypt_key:
            out["encryptKey"] = self.encrypt_key
        return out

    @classmethod
    def from_dict(cls, prefix: str, data: Mapping[str, Any], source: Source = Source.KVSTORE) -> IPCacheEntry:
        identity = data.get("identity")
        if not isinstance(identity, int) or isinstance(identity, bool):
            raise ValueError(f"ipcache {prefix}: identity must be an integer, got {identity!r}")
        return cls.of(prefix, identity, source, str(data.get("node") or ""),
                      str(data.get("tunnelEndpoint") or ""), int(data.get("encryptKey") or 0))


def world_entries(dual_stack: bool = False) -> list[IPCacheEntry]:
    """The default routes of the world: 0.0.0.0/0 and ::/0."""
    v4, v6 = (WORLD_IPV4_IDENTITY, WORLD_IPV6_IDENTITY) if dual_stack else (WORLD_IDENTITY, WORLD_IDENTITY)
    return [IPCacheEntry.of("0.0.0.0/0", v4, Source.WORLD), IPCacheEntry.of("::/0", v6, Source.WORLD)]


def node_entries(node: str, addresses: Iterable[str], own_node: str, tunnel: bool = False) -> list[IPCacheEntry]:
    """A node's IPs: host (1) when ``node`` is ``own_node``, remote-node (6) otherwise.

    ``tunnel``: remote entries carry the node's first address as tunnel endpoint.
    """
    addrs = [_address(a) for a in addresses]
    own = node == own_node
    identity = HOST_IDENTITY if own else REMOTE_NODE_IDENTITY
    endpoint = addrs[0] if (tunnel and addrs and not own) else ""
    return [IPCacheEntry.of(a, identity, Source.NODE, node, endpoint) for a in addrs]


def _address(text: str) -> str:
    """The address of ``192.168.10.100`` or ``192.168.10.100/24`` (an interface address)."""
    try:
        return str(ipaddress.ip_interface(text.strip()).ip)
    except ValueError as err:
        raise ValueError(f"ipcache: invalid node address {text!r}: {err}") from None


def cidr_entries(prefixes: Mapping[str, int]) -> list[IPCacheEntry]:
    """CIDR prefixes selected by policy -> their local identities."""
    return [IPCacheEntry.of(p, n, Source.CIDR) for p, n in prefixes.items()]


def _rank(entry: IPCacheEntry) -> tuple[int, str, int, str]:
    # Precedence first; then a fixed order so the result never depends on input order.
    return (int(entry.source), entry.node, -entry.identity, entry.tunnel_endpoint)


class IPCache:
    """The merged, immutable ipcache: one entry per prefix."""

    def __init__(self, entries: Iterable[IPCacheEntry] = ()) -> None:
        chosen: dict[Network, IPCacheEntry] = {}
        for entry in entries:
            current = chosen.get(entry.prefix)
            if current is None or _rank(entry) > _rank(current):
                chosen[entry.prefix] = entry
        self._entries = chosen
        self._lengths: dict[int, list[int]] = {
            version: sorted({net.prefixlen for net in chosen if net.version == version}, reverse=True)
            for version in (4, 6)
        }

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[IPCacheEntry]:
        return iter(sorted(self._entries.values(), key=_sort_key))

    def __contains__(self, prefix: object) -> bool:
        return isinstance(prefix, str) and parse_prefix(prefix) in self._entries

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IPCache) and self._entries == other._entries

    __hash__ = None  # type: ignore[assignment]

    def get(self, prefix: str) -> IPCacheEntry | None:
        """The entry of exactly this prefix."""
        return self._entries.get(parse_prefix(prefix))

    def longest_prefix_match(self, ip: str) -> IPCacheEntry | None:
        """The entry of the most specific prefix containing ``ip`` (what the LPM-trie map returns)."""
        addr = ipaddress.ip_address(ip)
        for length in self._lengths[addr.version]:
            entry = self._entries.get(ipaddress.ip_network((addr, length), strict=False))
            if entry is not None:
                return entry
        return None

    def identity_of(self, ip: str) -> int:
        """The identity of ``ip``; 0 (unknown) when nothing covers it."""
        entry = self.longest_prefix_match(ip)
        return entry.identity if entry is not None else 0

    def diff(self, old: IPCache) -> tuple[list[IPCacheEntry], list[IPCacheEntry]]:
        """(entries to upsert, entries to delete) that turn ``old`` into this cache."""
        upserts = [e for p, e in self._entries.items() if old._entries.get(p) != e]
        deletes = [e for p, e in old._entries.items() if p not in self._entries]
        return sorted(upserts, key=_sort_key), sorted(deletes, key=_sort_key)


def _sort_key(entry: IPCacheEntry) -> tuple[int, int, int]:
    return (entry.prefix.version, int(entry.prefix.network_address), entry.prefix.prefixlen)


def merge(sources: Iterable[Iterable[IPCacheEntry]], dual_stack: bool = False,
          world_default: bool = True) -> IPCache:
    """One ipcache from several sources; each entry's ``source`` decides conflicts (see module doc)."""
    entries: list[IPCacheEntry] = world_entries(dual_stack) if world_default else []
    for source in sources:
        entries.extend(source)
    return IPCache(entries)
