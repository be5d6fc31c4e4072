"""Routes a node needs, computed from the cluster's nodes: native routing with auto-direct-node-routes.

Pure: the agent feeds it the node table and hands the result to the route reconciler.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class RouteSpec:
    dst: str  # CIDR
    gateway: str | None = None
    dev: str | None = None
    scope: str = "universe"  # universe | link


@dataclass(frozen=True)
class NodeInfo:
    name: str
    internal_ip: str
    pod_cidrs: tuple[str, ...]
    underlay_cidr: str = ""  # the node's L2 segment, e.g. 192.168.10.0/24
    router_ip: str = ""  # the node's own address inside its pod CIDR (membrane_host)


def node_routes(self_name: str, nodes: list[NodeInfo], underlay_dev: str, auto_direct: bool = True) -> dict[str, RouteSpec]:
    """Routes to other nodes' pod CIDRs via their node IPs, for nodes on this node's L2 segment.

    Nodes on another segment are left to the underlay (a router or BGP), as Cilium does with
    ``direct-routing-skip-unreachable``.
    """
    if not auto_direct:
        return {}
    me = next((n for n in nodes if n.name == self_name), None)
    if me is None:
        return {}
    my_net = ipaddress.IPv4Network(me.underlay_cidr) if me.underlay_cidr else None
    routes: dict[str, RouteSpec] = {}
    for node in nodes:
        if node.name == self_name or not node.internal_ip:
            continue
        if my_net is not None and ipaddress.IPv4Address(node.internal_ip) not in my_net:
            continue
        for cidr in node.pod_cidrs:
            routes[cidr] = RouteSpec(dst=cidr, gateway=node.internal_ip, dev=underlay_dev)
    return routes


def endpoint_route(ip: str, host_ifname: str) -> RouteSpec:
    """Per-endpoint route: the pod's /32 straight to its veth."""
    return RouteSpec(dst=f"{ip}/32", dev=host_ifname, scope="link")
