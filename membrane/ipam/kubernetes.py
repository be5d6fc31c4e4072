"""Kubernetes-mode IPAM: every node brings its own podCIDR (Node.spec.podCIDR); nothing is allocated here.

What remains is checking what the nodes bring: each podCIDR is a valid IPv4 network with room for pods, and
no two nodes' podCIDRs overlap.
"""

from __future__ import annotations

import ipaddress

from membrane.ipam.cidr import parse_network
from membrane.model.errors import ValidationError


def validate_kubernetes_pod_cidrs(node_cidrs: dict[str, str]) -> dict[str, str]:
    """Node name -> podCIDR in canonical form; ValidationError naming the node(s) if one is bad or two overlap."""
    if not isinstance(node_cidrs, dict):
        raise ValidationError(f"expected a mapping of node name to podCIDR, got {type(node_cidrs).__name__}")
    parsed: list[tuple[str, ipaddress.IPv4Network]] = []
    for node, cidr in node_cidrs.items():
        where = f"node {node}: podCIDR"
        if not isinstance(node, str) or not node:
            raise ValidationError(f"node name must be a non-empty string, got {node!r}", "podCIDRs")
        net = parse_network(cidr, where)
        if net.prefixlen > 30:
            raise ValidationError(f"{net} leaves no usable pod addresses (need /30 or wider)", where)
        for other, other_net in parsed:
            if net.overlaps(other_net):
                raise ValidationError(f"podCIDR {net} of node {node} overlaps podCIDR {other_net} of node {other}")
        parsed.append((node, net))
    return {node: str(net) for node, net in parsed}
