"""The frontends a node's datapath serves for Services, with their backends (what Cilium's LB maps hold).

From a validated v1 Service (membrane.model.service), its EndpointSlices and the nodes:

* ClusterIP ``clusterIP:port`` (none for headless and ExternalName Services),
* NodePort ``nodeIP:nodePort`` on the node's addresses (every node's without ``node``) for NodePort and
  LoadBalancer Services, unless ``allocateLoadBalancerNodePorts: false``,
* ExternalIP ``externalIP:port`` and LoadBalancer ``status.loadBalancer.ingress[].ip:port``.

Backends come from ready endpoints; terminating-but-serving endpoints are kept with ``terminating`` set
(existing connections only). The backend port is the EndpointSlice port of the same name as the Service
port (so a named targetPort resolves per pod), else a numeric targetPort. With a ``node``,
internalTrafficPolicy Local trims ClusterIP backends to that node's, and externalTrafficPolicy Local trims
the NodePort/ExternalIP/LoadBalancer ones; ``local`` flags such frontends.

Frontend and backend IDs are small ints kept stable by ``ServiceIDs`` across calls, so the datapath can
apply differences: a frontend keeps its ID while its address exists, a backend while any frontend uses it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from membrane.loadbalancer.endpointslices import SERVICE_NAME_LABEL

CLUSTER_IP, NODE_PORT, EXTERNAL_IP, LOAD_BALANCER = "ClusterIP", "NodePort", "ExternalIPs", "LoadBalancer"
DEFAULT_AFFINITY_TIMEOUT = 10800
NODE_ADDRESS_TYPES = ("InternalIP", "ExternalIP")


@dataclass(frozen=True)
class Backend:
    id: int
    ip: str
    port: int
    protocol: str
    node: str = ""
    terminating: bool = False  # only for connections that already use it

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}/{self.protocol}"


@dataclass(frozen=True)
class Frontend:
    id: int
    service: str  # namespace/name
    type: str  # ClusterIP | NodePort | ExternalIPs | LoadBalancer
    ip: str
    port: int
    protocol: str
    port_name: str
    backends: tuple[Backend, ...]
    local: bool = False  # a Local traffic policy trimmed the backends to the node's own
    affinity_timeout: int = 0  # sessionAffinity ClientIP timeout in seconds; 0 = no affinity

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}/{self.protocol}"

    @property
    def active_backends(self) -> tuple[Backend, ...]:
        """Backends for new connections: the non-terminating ones, else (Kubernetes) the terminating ones."""
        active = tuple(b for b in self.backends if not b.terminating)
        return active or self.backends


class IDAllocator:
    """Small positive ints per key: the lowest free one for a new key, stable while the key is kept."""

    def __init__(self, first: int = 1) -> None:
        self.first = first
        self.ids: dict[Hashable, int] = {}

    def get(self, key: Hashable) -> int:
        if key not in self.ids:
            used = set(self.ids.values())
            value = self.first
            while value in used:
                value += 1
            self.ids[key] = value
        return self.ids[key]

    def retain(self, keys: Iterable[Hashable]) -> None:
        """Free the IDs of every key not in ``keys``."""
        keep = set(keys)
        self.ids = {k: v for k, v in self.ids.items() if k in keep}


class ServiceIDs:
    """Frontend IDs by (ip, port, protocol) and backend IDs by (ip, port, protocol)."""

    def __init__(self) -> None:
        self.frontends = IDAllocator()
        self.backends = IDAllocator()

    def retain(self, frontends: Iterable[Frontend]) -> None:
        fes = list(frontends)
        self.frontends.retain((f.ip, f.port, f.protocol) for f in fes)
        self.backends.retain((b.ip, b.port, b.protocol) for f in fes for b in f.backends)


def slices_of(service: dict[str, Any], slices: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    meta = service["metadata"]
    return [s for s in slices if (s.get("metadata") or {}).get("namespace") == meta.get("namespace")
            and ((s.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL) == meta["name"]]


def node_ips(nodes: Iterable[dict[str, Any]], node: str | None = None) -> list[str]:
    """InternalIP/ExternalIP addresses of ``node`` (of every node without it), in order, deduplicated."""
    out: list[str] = []
    for n in nodes:
        if node is not None and (n.get("metadata") or {}).get("name") != node:
            continue
        for addr in (n.get("status") or {}).get("addresses") or []:
            if addr.get("type") in NODE_ADDRESS_TYPES and addr.get("address") and addr["address"] not in out:
                out.append(str(addr["address"]))
    return out


def _backends(port: dict[str, Any], slices: list[dict[str, Any]], ids: ServiceIDs) -> list[Backend]:
    """Backends of one Service port over the slices (ready, or terminating and serving)."""
    name, protocol = str(port.get("name") or ""), str(port.get("protocol") or "TCP")
    target = port.get("targetPort", port.get("port"))
    found: dict[tuple[str, int], Backend] = {}
    for sl in slices:
        if sl.get("addressType", "IPv4") != "IPv4":
            continue
        number = next((int(p["port"]) for p in sl.get("ports") or []
                       if str(p.get("name") or "") == name and (p.get("protocol") or "TCP") == protocol
                       and p.get("port")), None)
        if number is None and isinstance(target, int) and sl.get("ports") is None:
            number = target  # a selector-less Service's hand-written slice may omit ports
        if number is None:
            continue
        for ep in sl.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            ready = cond.get("ready") is not False
            serving = cond.get("serving", cond.get("ready")) is not False
            terminating = cond.get("terminating") is True
            if not ready and not (terminating and serving):
                continue
            for ip in ep.get("addresses") or []:
                key = (str(ip), number)
                if key not in found:
                    found[key] = Backend(ids.backends.get((str(ip), number, protocol)), str(ip), number, protocol,
                                         str(ep.get("nodeName") or ""), terminating=not ready)
    return sorted(found.values(), key=lambda b: b.id)


def _affinity(spec: dict[str, Any]) -> int:
    if spec.get("sessionAffinity") != "ClientIP":
        return 0
    cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
    return int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)


def service_frontends(service: dict[str, Any], slices: Iterable[dict[str, Any]], nodes: Iterable[dict[str, Any]],
                      ids: ServiceIDs, node: str | None = None) -> list[Frontend]:
    """The frontends of one Service (see the module docstring); ``slices`` may hold other Services' too."""
    spec = service.get("spec") or {}
    svc_type = spec.get("type") or "ClusterIP"
    cluster_ip = spec.get("clusterIP") or ""
    if svc_type == "ExternalName" or cluster_ip == "None" or not admitted(service):
        return []
    meta = service["metadata"]
    owner = f"{meta.get('namespace', 'default')}/{meta['name']}"
    own_slices = slices_of(service, slices)
    affinity = _affinity(spec)
    itp_local = spec.get("internalTrafficPolicy") == "Local"
    etp_local = spec.get("externalTrafficPolicy") == "Local"
    external_nodeports = svc_type == "NodePort" or (
        svc_type == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is not False)
    lb_ips = [str(i["ip"]) for i in (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
              if i.get("ip")] if svc_type == "LoadBalancer" else []
    nips = node_ips(nodes, node)
    out: list[Frontend] = []
    for port in spec.get("ports") or []:
        backends = _backends(port, own_slices, ids)
        protocol = str(port.get("protocol") or "TCP")
        addresses: list[tuple[str, str, int, bool]] = []
        if cluster_ip:
            addresses.append((CLUSTER_IP, cluster_ip, int(port["port"]), itp_local))
        if external_nodeports and port.get("nodePort"):
            addresses += [(NODE_PORT, ip, int(port["nodePort"]), etp_local) for ip in nips]
        addresses += [(EXTERNAL_IP, str(ip), int(port["port"]), etp_local) for ip in spec.get("externalIPs") or []]
        addresses += [(LOAD_BALANCER, ip, int(port["port"]), etp_local) for ip in lb_ips]
        for fe_type, ip, number, local in addresses:
            chosen = backends
            if local and node is not None:
                chosen = [b for b in backends if b.node == node]
            out.append(Frontend(ids.frontends.get((ip, number, protocol)), owner, fe_type, ip, number, protocol,
                                str(port.get("name") or ""), tuple(chosen), local=local, affinity_timeout=affinity))
    return out


def admitted(service: dict[str, Any]) -> bool:
    """Whether the Service holds every address its type needs (a ClusterIP, and NodePorts for NodePort
    and LoadBalancer). Admission allocates them when it is stored; one without them is not served."""
    spec = service.get("spec") or {}
    svc_type = spec.get("type") or "ClusterIP"
    if svc_type == "ExternalName" or spec.get("clusterIP") == "None":
        return True
    if not spec.get("clusterIP"):
        return False
    wants_node_ports = svc_type == "NodePort" or (
        svc_type == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is not False)
    return not wants_node_ports or all(p.get("nodePort") for p in spec.get("ports") or [])


def _held(service: dict[str, Any]) -> set[tuple[str, str]]:
    """The allocated values a Service's frontends use: its ClusterIP and NodePorts."""
    spec = service.get("spec") or {}
    out = {("ip", str(spec["clusterIP"]))} if spec.get("clusterIP") not in (None, "", "None") else set()
    if (spec.get("type") or "ClusterIP") in ("NodePort", "LoadBalancer"):
        out |= {("port", str(p["nodePort"])) for p in spec.get("ports") or [] if p.get("nodePort")}
    return out


def exclusive(services: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Services to serve, in their order: one that shares a ClusterIP or NodePort with an older one is
    left out whole (admission never stores two claimants; this keeps a hand-written one from taking
    another Service's traffic)."""
    listed = list(services)
    taken: set[tuple[str, str]] = set()
    losers: set[int] = set()
    for i in sorted(range(len(listed)), key=lambda i: _age(listed[i])):
        held = _held(listed[i])
        if held & taken:
            losers.add(i)
        taken |= held
    return [svc for i, svc in enumerate(listed) if i not in losers]


def _age(service: dict[str, Any]) -> tuple[str, str, str]:
    meta = service.get("metadata") or {}
    return (str(meta.get("creationTimestamp") or ""), str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def node_frontends(services: Iterable[dict[str, Any]], slices: Iterable[dict[str, Any]],
                   nodes: Iterable[dict[str, Any]], ids: ServiceIDs, node: str | None = None) -> list[Frontend]:
    """Every admitted Service's frontends for ``node`` (cluster-wide view without it), sorted by ID; frees
    the IDs of frontends and backends that are gone. See ``admitted`` and ``exclusive``."""
    slice_list, node_list = list(slices), list(nodes)
    out = [fe for svc in exclusive(services) for fe in service_frontends(svc, slice_list, node_list, ids, node)]
    ids.retain(out)
    return sorted(out, key=lambda f: f.id)
