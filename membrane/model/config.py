"""Cluster configuration in Cilium's Helm vocabulary (``--set key=value``).

One typed object, handed to the agent, operator and lab by constructor; it is stored in etcd at
lab creation so every daemon of a lab sees the same settings.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from membrane.model.encap import ENCAP_MODES, ENCAP_TYPES
from membrane.model.errors import ValidationError
from membrane.model.ipmasq import IpMasqConfig, check_cidrs
from membrane.model.monitor_aggregation import MonitorAggregation

IPAM_MODES = ("cluster-pool", "kubernetes")
ROUTING_MODES = ("native", "tunnel")
TUNNEL_PROTOCOLS = ("vxlan", "geneve")
TUNNEL_OVERHEAD = 50  # VXLAN over IPv4: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
ENCRYPTION_TYPES = ("wireguard", "ipsec")  # Cilium's encryption.type values; only wireguard is implemented
MAGLEV_SIZES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)


@dataclass
class ClusterConfig:
    cluster_name: str = "default"
    ipam_mode: str = "cluster-pool"
    cluster_pool_ipv4_pod_cidr_list: list[str] = field(default_factory=lambda: ["10.0.0.0/8"])
    cluster_pool_ipv4_mask_size: int = 24
    routing_mode: str = "native"
    ipv4_native_routing_cidr: str = "10.0.0.0/8"
    auto_direct_node_routes: bool = True  # no effect in tunnel mode: pod CIDRs are reached through the tunnel
    tunnel_protocol: str = "vxlan"
    tunnel_port: int = 8472  # Cilium's VXLAN default
    # Calico-style encapsulation in native routing (membrane.model.encap): Always | CrossSubnet | Never.
    encapsulation_mode: str = "Never"
    encapsulation_type: str = "vxlan"  # vxlan | ipip (IP-in-IP built in BPF, bpf/lib/ipip.h)
    max_pods_per_node: int = 110
    policy_enforcement_mode: str = "default"
    debug: bool = False  # debug.enabled: the agent logs at debug level
    enable_ipv4_masquerade: bool = True
    bpf_host_legacy_routing: bool = False  # False: eBPF host routing (Cilium's default on capable kernels)
    socket_lb_enabled: bool = True  # socketLB.enabled: on with kubeProxyReplacement, as in Cilium (bpf/sock.c)
    lb_algorithm: str = "random"
    maglev_table_size: int = 16381
    hubble_event_buffer_capacity: int = 4095
    hubble_metrics_enabled: list[str] = field(
        default_factory=lambda: ["flow", "drop", "tcp", "port-distribution", "icmp"])
    # Hubble's TCP :4244 takes only mutual TLS, as Cilium's chart defaults; false is the explicit opt-out.
    hubble_tls_enabled: bool = True
    l2_announcements_enabled: bool = False
    l2_announcements_lease_duration: str = "15s"  # Go durations, as the chart takes them
    l2_announcements_renew_deadline: str = "5s"
    l2_announcements_retry_period: str = "2s"
    bgp_control_plane_enabled: bool = False  # each node's agent runs an ExaBGP speaker (membrane.agent.bgp_speaker)
    # ip-masq-agent (membrane.model.ipmasq): the ip-masq-agent ConfigMap, when applied, wins over these.
    ip_masq_agent_enabled: bool = False
    ip_masq_agent_non_masquerade_cidrs: list[str] = field(default_factory=list)
    ip_masq_agent_masq_link_local: bool = False
    # policyCIDRMatchMode: [] (the default) = CIDR rules never select cluster nodes (or pods); Cilium's
    # [nodes] makes them select node IPs too (membrane.policy.nodecidr: node IPs a policy CIDR covers
    # get identities that carry the CIDR and the node's own reserved label).
    policy_cidr_match_mode: list[str] = field(default_factory=list)
    # Transparent encryption (membrane.endpoint.encryption): WireGuard between nodes, wireguard-go here.
    encryption_enabled: bool = False
    encryption_type: str = "wireguard"
    # hostFirewall.enabled: CiliumClusterwideNetworkPolicies with nodeSelector filter the nodes' own
    # traffic (the host endpoint, membrane.policy.hostpolicy and bpf/lib/host_firewall.h).
    host_firewall_enabled: bool = False
    # egressGateway.enabled: CiliumEgressGatewayPolicy rows in mb_egress_v4 (membrane.egressgw); needs
    # BPF masquerading as in Cilium (kube-proxy replacement is always on here).
    egress_gateway_enabled: bool = False
    # Monitor aggregation of Hubble's trace events (membrane.model.monitor_aggregation): Cilium's
    # bpf.monitorAggregation / monitorInterval / monitorFlags, with its defaults.
    bpf_monitor_aggregation: str = "medium"
    bpf_monitor_interval: str = "5s"
    bpf_monitor_flags: str = "all"

    # Helm key -> attribute. Keys are the ones Cilium's chart uses, so tutorial flags apply unchanged.
    HELM_KEYS = {
        "cluster.name": "cluster_name",
        "ipam.mode": "ipam_mode",
        "ipam.operator.clusterPoolIPv4PodCIDRList": "cluster_pool_ipv4_pod_cidr_list",
        "clusterPoolIPv4PodCIDRList": "cluster_pool_ipv4_pod_cidr_list",
        "ipam.operator.clusterPoolIPv4MaskSize": "cluster_pool_ipv4_mask_size",
        "clusterPoolIPv4MaskSize": "cluster_pool_ipv4_mask_size",
        "routingMode": "routing_mode",
        "ipv4NativeRoutingCIDR": "ipv4_native_routing_cidr",
        "autoDirectNodeRoutes": "auto_direct_node_routes",
        "tunnelProtocol": "tunnel_protocol",
        "tunnelPort": "tunnel_port",
        "encapsulation.mode": "encapsulation_mode",
        "encapsulation.type": "encapsulation_type",
        "maxPods": "max_pods_per_node",
        "policyEnforcementMode": "policy_enforcement_mode",
        "hubble.eventBufferCapacity": "hubble_event_buffer_capacity",
        "loadBalancer.algorithm": "lb_algorithm",
        "enableIPv4Masquerade": "enable_ipv4_masquerade",
        "bpf.masquerade": "enable_ipv4_masquerade",
        "bpf.hostLegacyRouting": "bpf_host_legacy_routing",
        "socketLB.enabled": "socket_lb_enabled",
        "maglev.tableSize": "maglev_table_size",
        "hubble.metrics.enabled": "hubble_metrics_enabled",
        "hubble.tls.enabled": "hubble_tls_enabled",
        "l2announcements.enabled": "l2_announcements_enabled",
        "l2announcements.leaseDuration": "l2_announcements_lease_duration",
        "l2announcements.leaseRenewDeadline": "l2_announcements_renew_deadline",
        "l2announcements.leaseRetryPeriod": "l2_announcements_retry_period",
        "bgpControlPlane.enabled": "bgp_control_plane_enabled",
        "ipMasqAgent.enabled": "ip_masq_agent_enabled",
        "ipMasqAgent.config.nonMasqueradeCIDRs": "ip_masq_agent_non_masquerade_cidrs",
        "ipMasqAgent.config.masqLinkLocal": "ip_masq_agent_masq_link_local",
        "policyCIDRMatchMode": "policy_cidr_match_mode",
        "encryption.enabled": "encryption_enabled",
        "encryption.type": "encryption_type",
        "hostFirewall.enabled": "host_firewall_enabled",
        "egressGateway.enabled": "egress_gateway_enabled",
        "bpf.monitorAggregation": "bpf_monitor_aggregation",
        "bpf.monitorInterval": "bpf_monitor_interval",
        "bpf.monitorFlags": "bpf_monitor_flags",
    }

    def set(self, key: str, raw: str) -> None:
        """Apply one ``--set key=value``; raises ValidationError naming the key."""
        attr = self.HELM_KEYS.get(key)
        if attr is None:
            known = ", ".join(sorted(self.HELM_KEYS))
            raise ValidationError(f"--set {key}: unknown setting (known: {known})")
        current = getattr(self, attr)
        try:
            value: Any
            if isinstance(current, bool):
                if raw.lower() not in ("true", "false"):
                    raise ValueError("expected true or false")
                value = raw.lower() == "true"
            elif isinstance(current, int):
                value = int(raw)
            elif isinstance(current, list):
                value = [v.strip() for v in raw.strip("{}[]").split(",") if v.strip()]
            else:
                value = raw
        except ValueError as exc:
            raise ValidationError(f"--set {key}={raw}: {exc}") from None
        setattr(self, attr, value)
        self.validate(prefix=f"--set {key}", relations=False)

    def validate(self, prefix: str = "config", relations: bool = True) -> None:
        """Every setting on its own; with ``relations`` also settings that constrain each other
        (checked once all ``--set`` are in, so their order does not matter)."""
        if self.ipam_mode not in IPAM_MODES:
            raise ValidationError(f"{prefix}: ipam.mode {self.ipam_mode!r} not supported (one of {', '.join(IPAM_MODES)})")
        if self.routing_mode not in ROUTING_MODES:
            raise ValidationError(f"{prefix}: routingMode {self.routing_mode!r} not one of {', '.join(ROUTING_MODES)}")
        if self.tunnel_protocol not in TUNNEL_PROTOCOLS:
            raise ValidationError(f"{prefix}: tunnelProtocol {self.tunnel_protocol!r} is not one of "
                                  f"{', '.join(TUNNEL_PROTOCOLS)}")
        if self.routing_mode == "tunnel" and self.tunnel_protocol == "geneve":
            raise ValidationError(f"{prefix}: tunnelProtocol geneve is not implemented yet; use vxlan")
        if self.encryption_type not in ENCRYPTION_TYPES:
            raise ValidationError(f"{prefix}: encryption.type {self.encryption_type!r} is not one of "
                                  f"{', '.join(ENCRYPTION_TYPES)}")
        if self.encryption_enabled and self.encryption_type == "ipsec":
            raise ValidationError(f"{prefix}: encryption.type ipsec is not implemented yet; use wireguard")
        if not 1 <= self.tunnel_port <= 65535:
            raise ValidationError(f"{prefix}: tunnelPort must be between 1 and 65535")
        if self.encapsulation_mode not in ENCAP_MODES:
            raise ValidationError(f"{prefix}: encapsulation.mode {self.encapsulation_mode!r} is not one of "
                                  f"{', '.join(ENCAP_MODES)}")
        if self.encapsulation_type not in ENCAP_TYPES:
            raise ValidationError(f"{prefix}: encapsulation.type {self.encapsulation_type!r} is not one of "
                                  f"{', '.join(ENCAP_TYPES)}")
        if relations and self.routing_mode == "tunnel" and self.encapsulation_mode != "Never":
            raise ValidationError(f"{prefix}: encapsulation.mode={self.encapsulation_mode} applies to "
                                  "routingMode=native; routingMode=tunnel always encapsulates with tunnelProtocol "
                                  "(set one or the other)")
        if not self.cluster_pool_ipv4_pod_cidr_list:
            raise ValidationError(f"{prefix}: clusterPoolIPv4PodCIDRList must not be empty")
        for cidr in self.cluster_pool_ipv4_pod_cidr_list:
            try:
                net = ipaddress.IPv4Network(cidr)
            except ValueError as exc:
                raise ValidationError(f"{prefix}: clusterPoolIPv4PodCIDRList: {cidr!r}: {exc}") from None
            if net.prefixlen > self.cluster_pool_ipv4_mask_size:
                raise ValidationError(
                    f"{prefix}: clusterPoolIPv4MaskSize /{self.cluster_pool_ipv4_mask_size} is larger than {cidr}"
                )
        if not 8 <= self.cluster_pool_ipv4_mask_size <= 30:
            raise ValidationError(f"{prefix}: clusterPoolIPv4MaskSize must be between 8 and 30")
        try:
            ipaddress.IPv4Network(self.ipv4_native_routing_cidr)
        except ValueError as exc:
            raise ValidationError(f"{prefix}: ipv4NativeRoutingCIDR {self.ipv4_native_routing_cidr!r}: {exc}") from None
        if not 1 <= self.max_pods_per_node <= 65535:
            raise ValidationError(f"{prefix}: maxPods must be between 1 and 65535")
        if self.lb_algorithm not in ("random", "maglev"):
            raise ValidationError(f"{prefix}: loadBalancer.algorithm must be random or maglev")
        if self.maglev_table_size not in MAGLEV_SIZES:
            raise ValidationError(f"{prefix}: maglev.tableSize must be one of {', '.join(map(str, MAGLEV_SIZES))}")
        cap = self.hubble_event_buffer_capacity
        if cap < 1 or cap > 65535 or (cap + 1) & cap:
            raise ValidationError(f"{prefix}: hubble.eventBufferCapacity must be 2^n-1 between 1 and 65535 (got {cap})")
        unknown = [m for m in self.policy_cidr_match_mode if m != "nodes"]
        if unknown:
            raise ValidationError(f"{prefix}: policyCIDRMatchMode: {', '.join(unknown)}: the only mode is nodes")
        if self.policy_enforcement_mode not in ("default", "always", "never"):
            raise ValidationError(f"{prefix}: policyEnforcementMode must be default, always or never")
        try:
            self.ip_masq_agent_non_masquerade_cidrs = check_cidrs(
                self.ip_masq_agent_non_masquerade_cidrs, "ipMasqAgent.config.nonMasqueradeCIDRs")
        except ValidationError as exc:
            raise ValidationError(f"{prefix}: {exc}") from None
        if self.ip_masq_agent_enabled and not self.enable_ipv4_masquerade:
            raise ValidationError(f"{prefix}: ipMasqAgent.enabled=true needs BPF masquerading "
                                  "(bpf.masquerade / enableIPv4Masquerade is false)")
        if self.egress_gateway_enabled and not self.enable_ipv4_masquerade:
            raise ValidationError(f"{prefix}: egressGateway.enabled=true needs BPF masquerading "
                                  "(bpf.masquerade / enableIPv4Masquerade is false)")
        timers = (self.l2_announcements_lease_duration, self.l2_announcements_renew_deadline,
                  self.l2_announcements_retry_period)
        for key, text in zip(("leaseDuration", "leaseRenewDeadline", "leaseRetryPeriod"), timers, strict=True):
            parse_duration(text, f"{prefix}: l2announcements.{key}")
        self.monitor_aggregation(prefix)
        if relations:
            self.l2_timers(prefix)

    def l2_timers(self, prefix: str = "config") -> tuple[float, float, float]:
        """(lease duration, renew deadline, retry period) in seconds, checked as Cilium checks them."""
        duration = parse_duration(self.l2_announcements_lease_duration, f"{prefix}: l2announcements.leaseDuration")
        renew = parse_duration(self.l2_announcements_renew_deadline, f"{prefix}: l2announcements.leaseRenewDeadline")
        retry = parse_duration(self.l2_announcements_retry_period, f"{prefix}: l2announcements.leaseRetryPeriod")
        if duration <= 1 or duration <= renew:
            raise ValidationError(f"{prefix}: l2announcements.leaseDuration ({self.l2_announcements_lease_duration}) "
                                  "must be greater than 1s and than leaseRenewDeadline")
        if renew < retry * 1.2 or retry <= 0:
            raise ValidationError(f"{prefix}: l2announcements.leaseRenewDeadline ({self.l2_announcements_renew_deadline}) "
                                  "must be at least 20% larger than a positive leaseRetryPeriod")
        return duration, renew, retry

    def monitor_aggregation(self, prefix: str = "config") -> MonitorAggregation:
        """The datapath's trace aggregation from bpf.monitorAggregation / monitorInterval / monitorFlags."""
        return MonitorAggregation.parse(self.bpf_monitor_aggregation, self.bpf_monitor_interval,
                                        self.bpf_monitor_flags, prefix)

    def ip_masq_config(self) -> IpMasqConfig:
        """ip-masq-agent's configuration from the Helm values (ipMasqAgent.config)."""
        return IpMasqConfig(tuple(self.ip_masq_agent_non_masquerade_cidrs), self.ip_masq_agent_masq_link_local)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, what: str) -> float:
    """A Go duration (``15s``, ``200ms``, ``1m30s``) in seconds; ValidationError naming ``what``."""
    rest, total = str(text).strip(), 0.0
    if not rest:
        raise ValidationError(f"{what}: empty duration")
    while rest:
        num = ""
        while rest and (rest[0].isdigit() or rest[0] == "."):
            num, rest = num + rest[0], rest[1:]
        unit = next((u for u in ("ms", "s", "m", "h") if rest.startswith(u)), None)
        if not num or unit is None:
            raise ValidationError(f"{what}: {text!r} is not a duration (e.g. 15s, 200ms, 1m)")
        try:
            total += float(num) * _UNITS[unit]
        except ValueError:
            raise ValidationError(f"{what}: {text!r} is not a duration (e.g. 15s, 200ms, 1m)") from None
        rest = rest[len(unit):]
    return total
