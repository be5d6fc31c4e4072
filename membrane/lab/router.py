"""The lab router's routes to pod CIDRs: the part of the underlay a cloud route table or BGP would do.

Nodes on the router's other subnets cannot use auto-direct-node-routes (no shared L2), so the lab
tells its router where each node's pod CIDR lives, as soon as the node has one.
"""

from __future__ import annotations

import subprocess
from typing import Any

from membrane.lab.paths import LabPaths
from membrane.lab.topology import LabTopology


def desired_router_routes(nodes: list[dict[str, Any]]) -> dict[str, str]:
    """Pod CIDR -> node IP for every node that has both."""
    out = {}
    for node in nodes:
        ip = next((a["address"] for a in node.get("status", {}).get("addresses", []) if a.get("type") == "InternalIP"), "")
        spec = node.get("spec", {})
        for cidr in spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []):
            if ip:
                out[cidr] = ip
    return out


class RouterRoutes:
    def __init__(self, lab: str, topo: LabTopology) -> None:
        self.netns = LabPaths(lab).router_netns(topo.router.name) if topo.router else ""
        self.applied: dict[str, str] = {}

    def sync(self, nodes: list[dict[str, Any]]) -> None:
        if not self.netns:
            return
        want = desired_router_routes(nodes)
        for cidr, via in want.items():
            if self.applied.get(cidr) != via:
                subprocess.run(["ip", "-n", self.netns, "route", "replace", cidr, "via", via, "proto", "static"],
                               check=True, capture_output=True)
                self.applied[cidr] = via
        for cidr in [c for c in self.applied if c not in want]:
            subprocess.run(["ip", "-n", self.netns, "route", "del", cidr], capture_output=True)
            del self.applied[cidr]
