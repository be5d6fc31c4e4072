"""Tunnel routing on this node (routingMode=tunnel): the collect-metadata VXLAN device with
bpf/overlay.c on it, and mb_tunnel kept equal to the other nodes' pod CIDRs from the store's Node
objects (each to its InternalIP), as Cilium fills its tunnel map. The device lives in the node's
namespace, so it goes away with the node; ``membrane bpf tunnel list`` shows the map. The rows are a
desired table written by a reconciler (ops in membrane.datapath.maps.prefix_ops).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable

from membrane.datapath.linux import links
from membrane.datapath.maps.prefix_ops import TunnelOps
from membrane.datapath.maps.tunnel import TunnelMap
from membrane.datapath.overlay import Overlay
from membrane.endpoint.routing import NodeInfo
from membrane.state.reconciler import Reconciler
from membrane.state.table import Table

log = logging.getLogger(__name__)

TUNNEL_DEVICE = "cilium_vxlan"


def tunnel_endpoints(self_name: str, nodes: list[NodeInfo]) -> dict[str, str]:
    """Pod CIDR -> InternalIP of every other node that has both."""
    out: dict[str, str] = {}
    for node in nodes:
        if node.name == self_name or not node.internal_ip:
            continue
        for cidr in node.pod_cidrs:
            out[str(ipaddress.IPv4Network(cidr, strict=False))] = node.internal_ip
    return out


class TunnelSync:
    def __init__(self, node: str, nodes: Callable[[], list[NodeInfo]], pin_dir: str, port: int) -> None:
        self.node = node
        self._nodes = nodes
        self.port = port
        self.overlay = Overlay(pin_dir)
        self.ifindex = 0
        self.map: TunnelMap | None = None
        self.table: Table[str, str] = Table("tunnel", initialized=False)
        self.reconciler: Reconciler[str, str] = Reconciler(
            self.table, TunnelOps(lambda: self.map, self.table.items), name="bpf-tunnel", prune_interval=60.0)

    def start(self) -> None:
        """The device (created if missing) and its program; then encapsulation is on."""
        self.ifindex = links.ensure_vxlan(TUNNEL_DEVICE, self.port)
        self.overlay.attach(self.ifindex)
        self.map = self.overlay.tunnels()
        log.info("tunnel routing: %s (ifindex %d, UDP %d)", TUNNEL_DEVICE, self.ifindex, self.port)

    def sync(self) -> None:
        if not self.ifindex:
            return
        rows = tunnel_endpoints(self.node, self._nodes())
        if rows != self.table.items():
            log.info("tunnel map: %d remote pod CIDRs", len(rows))
        self.table.replace_all(rows)
        self.table.mark_initialized()
        self.reconciler.run_once()

    def entries(self) -> list[tuple[str, str]]:
        """(pod CIDR network address, node IP) rows, as cilium-dbg bpf tunnel list prints them."""
        if self.map is None:
            return []
        rows = sorted(self.map.entries().items(), key=lambda kv: kv[0])
        return [(f"{net.network_address}:0", f"{ip}:0") for net, ip in rows]

    def close(self) -> None:
        self.reconciler.stop()
        if self.map is not None:
            self.map.close()
            self.map = None
        self.overlay.close()
