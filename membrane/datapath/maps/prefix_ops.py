"""Reconciler ops for the two prefix maps the agent fills from the store: mb_tunnel (pod CIDR ->
node IP of its owner, routingMode=tunnel) and mb_ipmasq_v4 (ip-masq-agent's non-masquerade
prefixes). Rows are keyed by normalised prefix text; ``prune`` makes the map exact (prefixes no row
asks for go, a tunnel entry pointing at the wrong node is written again). The maps are reached
through callables, as in membrane.datapath.maps.ops, so a missing datapath leaves rows pending.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Protocol

from membrane.datapath.maps.ops import DatapathUnavailable


class TunnelTarget(Protocol):
    def update(self, prefix: str, node_ip: str, kind: str = "vxlan") -> None: ...
    def delete(self, prefix: str) -> bool: ...
    def entries(self) -> dict[ipaddress.IPv4Network, tuple[ipaddress.IPv4Address, str]]: ...


class IpMasqTarget(Protocol):
    def update(self, prefix: str) -> None: ...
    def delete(self, prefix: str) -> bool: ...
    def prefixes(self) -> list[ipaddress.IPv4Network]: ...


def prefix_text(prefix: str | ipaddress.IPv4Network) -> str:
    """The row key of a prefix: ``10.0.1.0/24`` however it was written (host bits dropped)."""
    return str(ipaddress.IPv4Network(prefix, strict=False))


class TunnelOps:
    """Rows ``pod CIDR -> (node IP, "vxlan" | "ipip")`` into mb_tunnel."""

    def __init__(self, target: Callable[[], TunnelTarget | None],
                 desired: Callable[[], Mapping[str, tuple[str, str]]] = dict) -> None:
        self._target = target
        self._desired = desired

    def _map(self) -> TunnelTarget:
        target = self._target()
        if target is None:
            raise DatapathUnavailable("mb_tunnel: the tunnel device is not set up")
        return target

    def update(self, prefix: str, target: tuple[str, str]) -> None:
        node_ip, kind = target
        self._map().update(prefix, node_ip, kind)

    def delete(self, prefix: str) -> None:
        self._map().delete(prefix)

    def prune(self, keys: set[str]) -> None:
        target = self._map()
        want = self._desired()
        for net, (node_ip, kind) in target.entries().items():
            prefix = prefix_text(net)
            if prefix not in keys:
                target.delete(prefix)
            elif prefix in want and want[prefix] != (str(node_ip), kind):
                target.update(prefix, *want[prefix])


class IpMasqOps:
    """Rows ``prefix -> True`` into mb_ipmasq_v4 (the value carries nothing)."""

    def __init__(self, target: Callable[[], IpMasqTarget | None]) -> None:
        self._target = target

    def _map(self) -> IpMasqTarget:
        target = self._target()
        if target is None:
            raise DatapathUnavailable("mb_ipmasq_v4: the node datapath is not loaded")
        return target

    def update(self, prefix: str, _present: bool) -> None:
        self._map().update(prefix)

    def delete(self, prefix: str) -> None:
        self._map().delete(prefix)

    def prune(self, keys: set[str]) -> None:
        target = self._map()
        for net in target.prefixes():
            if prefix_text(net) not in keys:
                target.delete(prefix_text(net))
