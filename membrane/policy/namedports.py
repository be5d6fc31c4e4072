"""Named ports: a pod's container port names, and the table the resolver looks egress names up in.

Ingress names resolve against the subject endpoint's own ports; egress names against the peers': the
table is keyed by the peer's security identity, and a name may stand for several numbers (pods with
one identity, or all peers of an L3 wildcard, need not agree) — each number gives its own policy-map
entry, as Cilium does. The agent (pods + ipcache) and ``policy simulate`` (pods + allocated
identities) both build the table with :func:`peer_named_ports`, from :func:`pod_named_ports`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from membrane.model.pod import container_ports

NamedPorts = Mapping[str, tuple[int, str]]  # one pod: name -> (port, protocol)
PortSet = frozenset[tuple[int, str]]
PeerNamedPorts = Mapping[int, Mapping[str, PortSet]]  # peer identity -> name -> {(port, protocol)}

WILDCARD_PEER = 0  # an L3 wildcard entry: any peer's numbers


def pod_named_ports(pod: Mapping[str, Any]) -> dict[str, tuple[int, str]]:
    """name -> (port, protocol) of a pod object's named container ports (the first of a duplicate name)."""
    out: dict[str, tuple[int, str]] = {}
    try:
        ports = container_ports(dict(pod))
    except (KeyError, TypeError, ValueError):  # a malformed pod names no ports; admission rejects most
        return out
    for port in ports:
        if port.name and port.port:
            out.setdefault(str(port.name).lower(), (int(port.port), str(port.protocol or "TCP").upper()))
    return out


def peer_named_ports(pods: Iterable[tuple[int, NamedPorts]]) -> dict[int, dict[str, PortSet]]:
    """(identity, that pod's named ports) pairs -> the resolver's table (names of every pod merged)."""
    merged: dict[int, dict[str, set[tuple[int, str]]]] = {}
    for identity, ports in pods:
        if not ports:
            continue
        table = merged.setdefault(identity, {})
        for name, hit in ports.items():
            table.setdefault(name, set()).add((int(hit[0]), str(hit[1]).upper()))
    return {ident: {name: frozenset(hits) for name, hits in table.items()} for ident, table in merged.items()}


def peer_port_numbers(table: PeerNamedPorts, peer: int, name: str) -> PortSet:
    """The (port, protocol) pairs ``name`` stands for at ``peer`` (every peer's for the wildcard 0)."""
    if peer == WILDCARD_PEER:
        return frozenset(hit for ports in table.values() for hit in ports.get(name, ()))
    return table.get(peer, {}).get(name, frozenset())


def changed_names(old: PeerNamedPorts, new: PeerNamedPorts) -> set[str]:
    """Port names whose numbers changed for some identity between two tables."""
    out: set[str] = set()
    for ident in old.keys() | new.keys():
        a, b = old.get(ident, {}), new.get(ident, {})
        out.update(name for name in a.keys() | b.keys() if a.get(name) != b.get(name))
    return out
