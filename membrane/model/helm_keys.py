"""Cilium's Helm keys and what each means in Membrane: one table, one entry per key.

Every key is one of:

- ``Setting``: a ClusterConfig attribute, Cilium's meaning (``ipam.mode`` → ``ipam_mode``);
- ``Fixed``: something Membrane always does one way (``kubeProxyReplacement``: there is no
  kube-proxy). The fixed value is accepted silently; any other value warns that it has no effect,
  or is refused as not implemented yet when the other value asks for a feature we lack;
- ``NoEffect``: meaningless in a lab (``k8sServiceHost``: no kube-apiserver); accepted with a warning;
- ``NotYet``: a feature whose issue has not landed; refused ("not implemented yet") unless the value
  is the one that leaves the feature off;
- ``Misspelt``: not a key of Cilium's chart but used by tutorials; warns, names the real key and is
  ignored, as Helm ignores it.

A key ending in ``.*`` covers every key under it. ``option`` is the name cilium-dbg ``config --all``
prints (DaemonConfig's field). To support a new feature: turn its ``NotYet`` entries into
``Setting`` entries (and add the ClusterConfig attribute).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from membrane.model.config import ClusterConfig


@dataclass(frozen=True)
class Setting:
    attr: str
    option: str = ""


@dataclass(frozen=True)
class Fixed:
    value: Any
    why: str  # what Membrane does instead, for the warning
    option: str = ""
    refuse_other: bool = False  # another value asks for a feature we lack: refuse it


@dataclass(frozen=True)
class NoEffect:
    why: str


@dataclass(frozen=True)
class NotYet:
    feature: str
    off: Any = None  # the value that keeps the feature off (accepted); None: no value is accepted
    option: str = ""


@dataclass(frozen=True)
class Misspelt:
    real: str
    why: str


Entry = Setting | Fixed | NoEffect | NotYet | Misspelt

_NO_APISERVER = "the lab has no kube-apiserver; agents reach the cluster store directly"

# Options of the keys ClusterConfig.HELM_KEYS maps (their cilium-dbg names).
_OPTIONS = {
    "cluster_name": "ClusterName",
    "ipam_mode": "IPAM",
    "cluster_pool_ipv4_pod_cidr_list": "IPAMClusterPoolIPv4CIDR",
    "cluster_pool_ipv4_mask_size": "IPAMClusterPoolIPv4MaskSize",
    "routing_mode": "RoutingMode",
    "ipv4_native_routing_cidr": "IPv4NativeRoutingCIDR",
    "auto_direct_node_routes": "EnableAutoDirectRouting",
    "tunnel_protocol": "TunnelProtocol",
    "tunnel_port": "TunnelPort",
    "encapsulation_mode": "EncapsulationMode",
    "encapsulation_type": "EncapsulationType",
    "max_pods_per_node": "MaxPods",
    "policy_enforcement_mode": "EnablePolicy",
    "enable_ipv4_masquerade": "EnableIPv4Masquerade",
    "bpf_host_legacy_routing": "EnableHostLegacyRouting",
    "socket_lb_enabled": "EnableSocketLB",
    "lb_algorithm": "NodePortAlg",
    "maglev_table_size": "MaglevTableSize",
    "hubble_event_buffer_capacity": "HubbleEventBufferCapacity",
    "hubble_metrics_enabled": "HubbleMetrics",
    "debug": "Debug",
    "ip_masq_agent_enabled": "EnableIPMasqAgent",
    "policy_cidr_match_mode": "PolicyCIDRMatchMode",
    "encryption_enabled": "EnableWireguard",
    "encryption_type": "EncryptionType",
    "host_firewall_enabled": "EnableHostFirewall",
    "egress_gateway_enabled": "EnableIPv4EgressGateway",
    "bpf_monitor_aggregation": "MonitorAggregation",
    "bpf_monitor_interval": "MonitorAggregationInterval",
    "bpf_monitor_flags": "MonitorAggregationFlags",
}

KEYS: dict[str, Entry] = {
    # ---- implemented settings beyond ClusterConfig.HELM_KEYS --------------------------------------
    "debug.enabled": Setting("debug", "Debug"),
    # ---- always on (or off) in Membrane --------------------------------------------------------
    "kubeProxyReplacement": Fixed(True, "there is no kube-proxy: the BPF load balancer serves every Service",
                                  "KubeProxyReplacement"),
    "endpointRoutes.enabled": Fixed(True, "every endpoint is routed by its own /32 route to its veth",
                                    "EnableEndpointRoutes"),
    "k8s.requireIPv4PodCIDR": Fixed(True, "the agent always waits for its node's pod CIDR", "K8sRequireIPv4PodCIDR"),
    "k8s.requireIPv6PodCIDR": Fixed(False, "IPv6 is off (not implemented yet), so there is no IPv6 pod CIDR "
                                    "to wait for, as in Cilium with ipv6.enabled=false", "K8sRequireIPv6PodCIDR"),
    "ipv4.enabled": Fixed(True, "Membrane is IPv4-only", "EnableIPv4"),
    "ipv6.enabled": Fixed(False, "IPv6 is not implemented yet", "EnableIPv6", refuse_other=True),
    "hubble.enabled": Fixed(True, "every agent runs Hubble's observer", "EnableHubble"),
    "hubble.relay.enabled": Fixed(True, "every lab runs a Hubble relay"),
    "hubble.ui.enabled": Fixed(True, "Hubble UI is always available: `membrane hubble ui` serves it on loopback, "
                                     "fed by the relay"),
    "hubble.metrics.enableOpenMetrics": Fixed(
        False, "metrics are served in the Prometheus text format, without OpenMetrics exemplars"),
    "prometheus.enabled": Fixed(True, "every agent serves Prometheus metrics (`membrane metrics list`)"),
    "operator.prometheus.enabled": Fixed(True, "the operator always serves Prometheus metrics"),
    "operator.replicas": Fixed(1, "the lab runs one operator"),
    "externalIPs.enabled": Fixed(True, "ExternalIPs are always served", "EnableExternalIPs"),
    "nodePort.enabled": Fixed(True, "NodePort Services are always served", "EnableNodePort"),
    "hostPort.enabled": Fixed(True, "HostPorts are always served", "EnableHostPort"),
    "loadBalancer.mode": Fixed("snat", "NodePort and LoadBalancer traffic is SNATed; DSR is not implemented yet",
                               "NodePortMode", refuse_other=True),
    "l7Proxy": Fixed(True, "the L7 proxies always run (membrane/proxy): L7 rules are enforced", "EnableL7Proxy"),
    "socketLB.hostNamespaceOnly": Fixed(False, "the socket LB serves the pods' namespaces; the lab's hosts are "
                                        "shared with other labs and are never translated", "BPFSocketLBHostnsOnly",
                                        refuse_other=True),
    # ---- meaningless in a lab ------------------------------------------------------------------
    "k8sServiceHost": NoEffect(_NO_APISERVER),
    "k8sServicePort": NoEffect(_NO_APISERVER),
    "rollOutCiliumPods": NoEffect("`membrane lab upgrade` always rolls the agents when the values change"),
    "installNoConntrackIptablesRules": NoEffect("the lab installs no iptables rules at all"),
    "image.*": NoEffect("the lab runs this checkout's Membrane, not a container image"),
    "operator.image.*": NoEffect("the lab runs this checkout's Membrane, not a container image"),
    "operator.prometheus.serviceMonitor.*": NoEffect("the lab runs no Prometheus operator"),
    "prometheus.serviceMonitor.*": NoEffect("the lab runs no Prometheus operator"),
    "resources.*": NoEffect("lab daemons are host processes without resource limits"),
    "tolerations": NoEffect("the lab has no taints or tolerations"),
    "cni.exclusive": NoEffect("Membrane is the lab's only CNI"),
    # ---- features whose issues have not landed ---------------------------------------------------
    "l2announcements.enabled": NotYet("L2 announcements", False, "EnableL2Announcements"),
    "l2announcements.*": NotYet("L2 announcements"),
    "egressGateway.reconciliationTriggerInterval": NoEffect("the agents recompute the egress rows on every "
                                                            "change of policies, pods and nodes in the store"),
    "egressGateway.*": NotYet("this egress gateway setting"),
    "encryption.nodeEncryption": Fixed(False, "only pod traffic is encrypted; node-to-node encryption is not "
                                       "implemented yet", "EncryptNode", refuse_other=True),
    "encryption.wireguard.userspaceFallback": Fixed(True, "there is no kernel WireGuard here: wireguard-go "
                                                    "(userspace) is always used"),
    "encryption.*": NotYet("this encryption setting"),
    "bgpControlPlane.enabled": NotYet("the BGP control plane", False, "EnableBGPControlPlane"),
    "bgpControlPlane.*": NotYet("the BGP control plane"),
    "ipMasqAgent.config.masqLinkLocalIPv6": Fixed(False, "IPv6 is off (not implemented yet)"),
    "ipMasqAgent.config.resyncInterval": NoEffect("the agents watch the configuration in the store instead of "
                                                  "re-reading a file"),
    "bandwidthManager.enabled": NotYet("the bandwidth manager", False, "EnableBandwidthManager"),
    "clustermesh.*": NotYet("Cluster Mesh"),
    "cluster.id": NotYet("Cluster Mesh", 0, "ClusterID"),
    # ---- tutorial spellings that are not chart keys --------------------------------------------
    "bpf.hostRouting": Misspelt("bpf.hostLegacyRouting",
                                "eBPF host routing is on unless bpf.hostLegacyRouting=true"),
}


def _option_of(key: str, attr: str) -> str:
    entry = KEYS.get(key)
    own = entry.option if isinstance(entry, Setting | Fixed | NotYet) else ""
    return _OPTIONS.get(attr) or own


def lookup(key: str) -> Entry | None:
    """The entry for a dotted key: ClusterConfig's (an implemented setting wins, so a feature that
    lands by adding its keys to ClusterConfig.HELM_KEYS needs no change here), the table's own, or
    the nearest ``prefix.*``."""
    attr = ClusterConfig.HELM_KEYS.get(key)
    if attr is not None:
        return Setting(attr, _option_of(key, attr))
    if key in KEYS:
        return KEYS[key]
    parts = key.split(".")
    for n in range(len(parts) - 1, 0, -1):
        entry = KEYS.get(".".join(parts[:n]) + ".*")
        if entry is not None:
            return entry
    return None


def known_keys() -> list[str]:
    return sorted({*KEYS, *ClusterConfig.HELM_KEYS})


def suggest(key: str) -> str | None:
    """The known key closest to a mistyped one (difflib), or None."""
    candidates = [k.removesuffix(".*") for k in known_keys()]
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if not close:  # a wrong case or a missing segment: compare the last segments too
        tails = {c.rsplit(".", 1)[-1].lower(): c for c in candidates}
        close = [tails[t] for t in difflib.get_close_matches(key.rsplit(".", 1)[-1].lower(), list(tails), n=1,
                                                                cutoff=0.8)]
    return close[0] if close else None


def options() -> list[tuple[str, Entry]]:
    """(cilium-dbg option name, entry) for every entry that has one, ClusterConfig's keys included."""
    out: dict[str, Entry] = {}
    for key, attr in ClusterConfig.HELM_KEYS.items():
        if option := _option_of(key, attr):
            out[option] = Setting(attr, option)
    for entry in KEYS.values():
        if isinstance(entry, Setting | Fixed | NotYet) and entry.option:
            out.setdefault(entry.option, entry)
    return sorted(out.items())
