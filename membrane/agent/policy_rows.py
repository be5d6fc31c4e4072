"""A resolved policy as BPF policy-map rows: the engine's prefix-form entries become port ranges, an
allow of a redirected port carries its proxy port, and an enforcing endpoint always lets the node in."""

from __future__ import annotations

from collections.abc import Mapping

from membrane.datapath.maps.policy import DIR_EGRESS, DIR_INGRESS, PolicyRule
from membrane.identity.labels import LabelSet
from membrane.policy.mapstate import PolicyEntry, ResolvedPolicy

HOST_IDENTITY = 1  # reserved:host


def label_map(labels: LabelSet) -> dict[str, str]:
    return {f"{lb.source}:{lb.key}": lb.value for lb in labels}


def map_rules(ep_id: int, resolved: ResolvedPolicy,
              proxy_ports: Mapping[tuple[str, int, int], int] | None = None) -> list[PolicyRule]:
    """The engine's prefix-form entries as map rules (a prefix of the port is a port range). An allow
    of exactly a redirected port carries its proxy port (``proxy_ports``: (direction, protocol, port))."""
    out = []
    for e in resolved.entries:
        proxy = 0
        if proxy_ports and not e.deny and e.port_prefix_len == 16:
            proxy = proxy_ports.get((e.direction, e.protocol, e.port), 0)
        out.append(PolicyRule(ep_id, DIR_INGRESS if e.direction == "ingress" else DIR_EGRESS, e.identity,
                              e.protocol, *_port_range(e), deny=e.deny, proxy_port=proxy))
    if resolved.ingress_enforced:
        # allow-localhost (Cilium's default): the node itself may always reach its pods.
        out.append(PolicyRule(ep_id, DIR_INGRESS, HOST_IDENTITY))
    return out


def _port_range(e: PolicyEntry) -> tuple[int, int]:
    if e.protocol == 0 or e.port_prefix_len == 0:
        return 0, 0
    if e.port_prefix_len >= 16:
        return e.port, 0
    return e.port, e.port | ((1 << (16 - e.port_prefix_len)) - 1)
