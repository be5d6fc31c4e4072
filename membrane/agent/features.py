"""The optional node features the agent starts by configuration: WireGuard (encryption.enabled), the
egress gateway (egressGateway.enabled), L2 announcements and the BGP control plane. Each adds its
controller and the mirror subscriptions that trigger it; the attributes below are the agent's."""

from __future__ import annotations

from membrane.agent.api import APIServer
from membrane.agent.bgp_speaker import BGPSpeaker
from membrane.agent.controllers import Controller, ControllerSet
from membrane.agent.egress_sync import EgressSync
from membrane.agent.l2_announcer import L2Announcer
from membrane.agent.tunnel_sync import TunnelSync
from membrane.agent.wireguard_sync import WireguardSync
from membrane.model.config import ClusterConfig
from membrane.store.etcd import EtcdClient
from membrane.store.mirror import Mirror
from membrane.store.resources import ResourceStore


class AgentFeatures:
    """Starters of the optional features; mixed into the Agent."""

    node: str
    prefix: str
    state_dir: str
    underlay_device: str
    config: ClusterConfig
    client: EtcdClient
    resources: ResourceStore
    api: APIServer
    controllers: ControllerSet
    tunnel: TunnelSync | None
    egress: EgressSync
    wireguard: WireguardSync | None
    l2: L2Announcer | None
    bgp: BGPSpeaker | None
    nodes_mirror: Mirror
    pods_mirror: Mirror
    ns_mirror: Mirror
    services_mirror: Mirror
    slices_mirror: Mirror
    egress_policies_mirror: Mirror

    def _start_wireguard(self) -> None:
        """encryption.enabled (type wireguard): cilium_wg0 and its peers (membrane.agent.wireguard_sync)."""
        if not self.config.encryption_enabled:
            return
        self.wireguard = WireguardSync(self.node, self.state_dir, self.nodes_mirror,
                                       self.resources)
        self.wireguard.start()
        ctrl = self.controllers.add(Controller("wireguard", self.wireguard.sync, interval=10))
        self.wireguard.on_exit = ctrl.trigger
        self.nodes_mirror.subscribe(lambda *_: ctrl.trigger())

    def _start_egress_gateway(self) -> None:
        """egressGateway.enabled: mb_egress_v4 from the policies, pods and nodes (agent/egress_sync.py)."""
        if self.config.egress_gateway_enabled and self.tunnel is not None:
            self.tunnel.ensure_vxlan()  # to the gateway node in any routing mode
        ctrl = self.controllers.add(Controller("egress-gateway", self.egress.sync, interval=30))
        for mirror in (self.egress_policies_mirror, self.pods_mirror, self.ns_mirror, self.nodes_mirror):
            mirror.subscribe(lambda *_: ctrl.trigger() if self.config.egress_gateway_enabled else None)
        self.api.route("GET", "/v1/bpf/egress", lambda _b: self.egress.entries())
        self.api.route("GET", "/v1/egress/status", lambda _b: self.egress.status())

    def _start_l2(self) -> None:
        """L2 announcements (l2announcements.enabled): ARP for the Services whose lease this node wins."""
        l2 = L2Announcer(self.node, self.client, self.resources.layout, self.prefix, self.config,
                         self.services_mirror, self.nodes_mirror, [self.underlay_device])
        self.l2 = l2
        ctrl = self.controllers.add(Controller("l2-announcements", l2.sync, interval=l2.retry))
        l2.start(ctrl.trigger)
        for mirror in (self.services_mirror, self.nodes_mirror):
            mirror.subscribe(lambda *_: ctrl.trigger())

    def _start_bgp(self) -> None:
        """BGP control plane v2 (bgpControlPlane.enabled): this node's ExaBGP speaker (membrane.agent.bgp_speaker)."""
        bgp = BGPSpeaker(self.node, self.client, self.resources, self.prefix, self.config.bgp_control_plane_enabled,
                         self.services_mirror, self.slices_mirror, self.nodes_mirror,
                         f"{self.state_dir}/bgp")
        self.bgp = bgp
        ctrl = self.controllers.add(Controller("bgp-control-plane", bgp.sync, interval=1 if bgp.enabled else 30))
        bgp.start(ctrl.trigger)
        for mirror in (self.services_mirror, self.slices_mirror, self.nodes_mirror):
            mirror.subscribe(lambda *_: ctrl.trigger())
