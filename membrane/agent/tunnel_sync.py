"""Encapsulation on this node: routingMode=tunnel (VXLAN to every node) or Calico-style
encapsulation.mode=Always|CrossSubnet by vxlan or ipip (Helm values or a Calico IPPool).

mb_tunnel is kept equal to ``tunnel_plan`` (membrane.model.encap): the pod CIDRs of the nodes this
node encapsulates toward, each to its InternalIP and type. The rows are a desired table written by a
reconciler (ops in membrane.datapath.maps.prefix_ops). VXLAN entries go through the collect-metadata
device cilium_vxlan with bpf/overlay.c on it (created when first needed); IPIP entries are
encapsulated in BPF (bpf/lib/ipip.h) and need no device. Nodes left out of the map are reached
natively (auto-direct-node-routes on the same subnet). The device lives in the node's namespace, so
it goes away with the node; ``membrane bpf tunnel list`` shows the map.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from membrane.datapath.device_ops import OverlayDeviceOps
from membrane.datapath.linux import links
from membrane.datapath.maps.prefix_ops import TunnelOps
from membrane.datapath.maps.tunnel import TunnelMap
from membrane.datapath.overlay import Overlay
from membrane.endpoint.routing import NodeInfo
from membrane.model.encap import Encapsulation, tunnel_plan
from membrane.state.reconciler import Reconciler
from membrane.state.table import Table

log = logging.getLogger(__name__)

TUNNEL_DEVICE = "cilium_vxlan"


def tunnel_endpoints(self_name: str, nodes: list[NodeInfo]) -> dict[str, str]:
    """Pod CIDR -> InternalIP of every other node that has both (routingMode=tunnel)."""
    plan = tunnel_plan(self_name, nodes, Encapsulation("Always", "vxlan"))
    return {cidr: entry.node_ip for cidr, entry in plan.items()}


class TunnelSync:
    def __init__(self, node: str, nodes: Callable[[], list[NodeInfo]], pin_dir: str, port: int,
                 encapsulation: Callable[[], Encapsulation] | None = None) -> None:
        self.node = node
        self._nodes = nodes
        self.port = port
        self._encapsulation = encapsulation or (lambda: Encapsulation("Always", "vxlan", "routingMode"))
        self.overlay = Overlay(pin_dir)
        self.ifindex = 0  # cilium_vxlan, once created
        self.map: TunnelMap | None = None
        self.table: Table[str, tuple[str, str]] = Table("tunnel", initialized=False)
        self.reconciler: Reconciler[str, tuple[str, str]] = Reconciler(
            self.table, TunnelOps(lambda: self.map, self.table.items), name="bpf-tunnel", prune_interval=60.0)
        # cilium_vxlan's program and mb_tunnel_config (ops in membrane.datapath.device_ops)
        self.devices: Table[str, int] = Table("tunnel-device")
        self.device_reconciler: Reconciler[str, int] = Reconciler(
            self.devices, OverlayDeviceOps(self.overlay, self.devices.items), name="bpf-tunnel-device",
            prune_interval=60.0)

    def start(self) -> None:
        """The map; the VXLAN device and its program when the encapsulation needs them."""
        self.map = self.overlay.tunnels()
        enc = self._encapsulation()
        if enc.enabled and enc.type == "vxlan":
            self._ensure_vxlan()
        log.info("encapsulation: %s %s (from %s)", enc.mode, enc.type, enc.source)

    def ensure_vxlan(self) -> None:
        """The VXLAN device whatever the routing: the egress gateway sends selected pods' packets to
        their gateway node through it (bpf/lib/egress_gw.h)."""
        self._ensure_vxlan()

    def _ensure_vxlan(self) -> None:
        if self.ifindex:
            return
        ifindex = links.ensure_vxlan(TUNNEL_DEVICE, self.port)
        self.devices.upsert(TUNNEL_DEVICE, ifindex)
        self.device_reconciler.run_once()
        behind = self.device_reconciler.not_done([TUNNEL_DEVICE]).get(TUNNEL_DEVICE)
        if behind is not None:  # retried by the reconciler; encapsulation stays off until then
            raise RuntimeError(f"from_overlay on {TUNNEL_DEVICE}: {behind.message or behind.state}")
        self.ifindex = ifindex
        log.info("tunnel routing: %s (ifindex %d, UDP %d)", TUNNEL_DEVICE, self.ifindex, self.port)

    def sync(self) -> None:
        if self.map is None:
            return
        enc = self._encapsulation()
        plan = tunnel_plan(self.node, self._nodes(), enc)
        if any(e.type == "vxlan" for e in plan.values()):
            self._ensure_vxlan()
        rows = {cidr: (e.node_ip, e.type) for cidr, e in plan.items()}
        if rows != self.table.items():
            log.info("tunnel map (%s %s): %d remote pod CIDRs", enc.mode, enc.type, len(rows))
        self.table.replace_all(rows)
        self.table.mark_initialized()
        self.reconciler.run_once()

    def entries(self) -> list[tuple[str, str]]:
        """(pod CIDR network address, node IP) rows, as cilium-dbg bpf tunnel list prints them; an
        IPIP entry's node is followed by ``(ipip)``."""
        if self.map is None:
            return []
        rows = sorted(self.map.entries().items(), key=lambda kv: kv[0])
        return [(f"{net.network_address}:0", f"{ip}:0" + (" (ipip)" if kind == "ipip" else ""))
                for net, (ip, kind) in rows]

    def close(self) -> None:
        self.reconciler.stop()
        self.device_reconciler.stop()
        if self.map is not None:
            self.map.close()
            self.map = None
        self.overlay.close()
