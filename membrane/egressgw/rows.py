"""Egress gateway rows: (source pod IP, destination CIDR) -> (gateway node IP, egress IP).

What every node's mb_egress_v4 holds, as ``cilium-dbg bpf egress list`` shows it, computed from the
parsed policies (membrane.model.egress_gw), the pods, namespaces and nodes:

- a pod is a source of a policy when one of its ``selectors`` matches: ``podSelector`` against the
  pod's labels plus ``io.kubernetes.pod.namespace`` (also under the ``k8s:``/``any:`` sources),
  ``namespaceSelector`` against its namespace's labels, ``nodeSelector`` against its node's labels;
  host-network pods and pods without an IP are never sources;
- the gateway node of a gateway config is the first node by name that its ``nodeSelector`` matches
  and that has an InternalIP; none -> ``GATEWAY_NOT_FOUND`` (the datapath drops 194);
- ``egressGateways[]``: each source is pinned to one of them by a CRC32 of its pod UID (or
  namespace/name when the pod has no UID), so the choice is stable across agents and restarts;
- the egress IP: ``egressIP`` when given; ``interface`` -> the first IPv4 of that device; neither ->
  the first IPv4 of the default-route device. Device addresses are only known on the gateway node
  itself (``LocalAddresses``); other nodes store ``egressIP`` or 0.0.0.0 there, which they never use.
  On the gateway, an IP that is on no device, or a device without an IPv4, gives ``NO_EGRESS_IP``
  (the datapath drops 204);
- ``excludedCIDRs`` and in-cluster prefixes (every node's pod CIDRs and InternalIP, the cluster pool)
  inside a destination get ``EXCLUDED`` rows, so the longest-prefix match leaves them alone; a
  destination wholly in-cluster is excluded as a whole;
- two policies naming the same (source, destination): the policy first by name wins.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from membrane.model.egress_gw import EgressPolicy, GatewayConfig, SourceSelector

NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
GATEWAY_NOT_FOUND = "0.0.0.0"  # policy matches, no gateway node: drop NO_EGRESS_GATEWAY (194)
EXCLUDED = "0.0.0.1"  # excluded or in-cluster destination: the normal path
NO_EGRESS_IP = "0.0.0.0"


@dataclass(frozen=True)
class SourcePod:
    namespace: str
    name: str
    ip: str
    node: str
    labels: Mapping[str, str] = field(default_factory=dict)
    uid: str = ""


@dataclass(frozen=True)
class GatewayNode:
    name: str
    ip: str  # InternalIP
    labels: Mapping[str, str] = field(default_factory=dict)
    pod_cidrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class LocalAddresses:
    """This node's IPv4 addresses by device and its default-route device (resolved by the agent)."""

    node: str = ""
    devices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default_device: str = ""

    def all(self) -> set[str]:
        return {ip for ips in self.devices.values() for ip in ips}


@dataclass(frozen=True, order=True)
class EgressKey:
    source_ip: str
    destination: str  # CIDR text, host bits cleared


@dataclass(frozen=True)
class EgressTarget:
    gateway_ip: str
    egress_ip: str
    policy: str = ""


def _with_sources(labels: Mapping[str, str]) -> dict[str, str]:
    out = dict(labels)
    for key, value in labels.items():
        out.setdefault(f"k8s:{key}", value)
        out.setdefault(f"any:{key}", value)
    return out


def selects(sel: SourceSelector, pod: SourcePod, namespace_labels: Mapping[str, str],
            node_labels: Mapping[str, str]) -> bool:
    if sel.pod is not None and not sel.pod.matches(_with_sources({**pod.labels, NAMESPACE_LABEL: pod.namespace})):
        return False
    ns_labels = {"kubernetes.io/metadata.name": pod.namespace, **namespace_labels}
    if sel.namespace is not None and not sel.namespace.matches(_with_sources(ns_labels)):
        return False
    return sel.node is None or sel.node.matches(node_labels)


def gateway_node(config: GatewayConfig, nodes: Iterable[GatewayNode]) -> GatewayNode | None:
    """The first node by name the config's nodeSelector matches (with an InternalIP)."""
    return next((n for n in sorted(nodes, key=lambda n: n.name)
                 if n.ip and config.node_selector.matches(n.labels)), None)


def egress_ip(config: GatewayConfig, gateway: GatewayNode, local: LocalAddresses) -> str:
    if gateway.name != local.node:
        return config.egress_ip or NO_EGRESS_IP
    if config.egress_ip:
        return config.egress_ip if config.egress_ip in local.all() else NO_EGRESS_IP
    device = config.interface or local.default_device
    ips = local.devices.get(device, ())
    return ips[0] if ips else NO_EGRESS_IP


def pinned_gateway(gateways: tuple[GatewayConfig, ...], pod: SourcePod) -> GatewayConfig:
    if len(gateways) == 1:
        return gateways[0]
    ident = pod.uid or f"{pod.namespace}/{pod.name}"
    return gateways[zlib.crc32(ident.encode()) % len(gateways)]


def _in_cluster(nodes: Iterable[GatewayNode], extra: Iterable[str]) -> list[ipaddress.IPv4Network]:
    nets = set()
    for text in [*extra, *(c for n in nodes for c in n.pod_cidrs), *(f"{n.ip}/32" for n in nodes if n.ip)]:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network):
            nets.add(net)
    return sorted(nets, key=lambda n: (n.network_address, n.prefixlen))


def destination_rows(policy: EgressPolicy, in_cluster: list[ipaddress.IPv4Network]
                     ) -> dict[str, bool]:
    """Destination prefix -> redirected (True) or excluded (False), for one policy."""
    rows: dict[str, bool] = {}
    for dest in policy.destinations:
        if any(dest.subnet_of(c) for c in in_cluster):
            rows[str(dest)] = False
            continue
        rows[str(dest)] = True
        for inner in (*policy.excluded, *in_cluster):
            if inner.subnet_of(dest):
                rows[str(inner)] = False
    return rows


def egress_rows(policies: Iterable[EgressPolicy], pods: Iterable[SourcePod], nodes: Iterable[GatewayNode],
                namespaces: Mapping[str, Mapping[str, str]], local: LocalAddresses,
                cluster_cidrs: Iterable[str] = ()) -> dict[EgressKey, EgressTarget]:
    """Every row of the egress map, from the cluster's state (see the module docstring)."""
    node_list = list(nodes)
    node_labels = {n.name: n.labels for n in node_list}
    in_cluster = _in_cluster(node_list, cluster_cidrs)
    pod_list = [p for p in pods if p.ip]
    out: dict[EgressKey, EgressTarget] = {}
    for policy in sorted(policies, key=lambda p: p.name):
        dests = destination_rows(policy, in_cluster)
        for pod in pod_list:
            ns_labels = namespaces.get(pod.namespace, {})
            if not any(selects(s, pod, ns_labels, node_labels.get(pod.node, {})) for s in policy.selectors):
                continue
            config = pinned_gateway(policy.gateways, pod)
            gw = gateway_node(config, node_list)
            target = (EgressTarget(GATEWAY_NOT_FOUND, NO_EGRESS_IP, policy.name) if gw is None
                      else EgressTarget(gw.ip, egress_ip(config, gw, local), policy.name))
            for dest, redirected in dests.items():
                key = EgressKey(pod.ip, dest)
                if key not in out:
                    out[key] = target if redirected else EgressTarget(EXCLUDED, NO_EGRESS_IP, policy.name)
    return out
