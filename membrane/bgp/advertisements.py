"""The routes one node advertises to each BGP peer, from Cilium's BGP v2 resources (§5.5-5.6).

``node_routes(node, cluster_configs, peer_configs, adverts, services, slices)`` follows Cilium:

* a CiliumBGPClusterConfig applies to the node when its ``nodeSelector`` matches (nil: every node);
  each of its instances peers with ``peers[]``, whose ``peerConfigRef`` names a CiliumBGPPeerConfig;
* a peer config's ``families[]`` select CiliumBGPAdvertisements by their labels; no families: nothing
  is advertised;
* ``PodCIDR``: the node's own pod CIDRs; ``Service``: ``LoadBalancerIP`` (only for Services without
  a loadBalancerClass or with ``io.cilium/bgp-control-plane``), ``ExternalIP`` and ``ClusterIP`` of
  the Services the ``selector`` matches (nil selector: none), as /32 (or ``aggregationLengthIPv4``);
* ``externalTrafficPolicy: Local`` advertises LoadBalancer and external IPs only from nodes with a
  local ready endpoint, ``internalTrafficPolicy: Local`` the same for ClusterIPs;
* a prefix several advertisements produce gets the union of their communities and the largest local
  preference, which is sent to iBGP peers only (same ASN).

``CiliumPodIPPool`` and ``Interface`` advertisements need features Membrane lacks; they yield nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from membrane.model.labels import LabelSelector
from membrane.model.service import service_selector_labels

BGP_CLASS = "io.cilium/bgp-control-plane"
SLICE_SERVICE_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Route:
    prefix: str
    communities: tuple[str, ...] = ()
    local_preference: int | None = None


@dataclass(frozen=True)
class NodeInfo:
    name: str
    labels: dict[str, str]
    pod_cidrs: tuple[str, ...]


@dataclass
class PeerRoutes:
    instance: str
    local_asn: int
    peer: str
    peer_address: str
    peer_asn: int
    routes: list[Route] = field(default_factory=list)


def _selector(data: Any) -> LabelSelector | None:
    return LabelSelector.from_dict(data, "selector") if data is not None else None


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _local_ready(slices: Sequence[dict[str, Any]], node: str) -> set[tuple[str, str]]:
    """(namespace, service) pairs with a ready endpoint on ``node``."""
    out = set()
    for s in slices:
        svc = (_meta(s).get("labels") or {}).get(SLICE_SERVICE_LABEL)
        for ep in s.get("endpoints") or []:
            if svc and ep.get("nodeName") == node and (ep.get("conditions") or {}).get("ready", True):
                out.add((_meta(s).get("namespace") or "default", svc))
    return out


def _service_prefixes(svc: dict[str, Any], kinds: Sequence[str], local: bool, agg: int) -> list[str]:
    spec, status = svc.get("spec") or {}, svc.get("status") or {}
    ips: list[str] = []
    external_ok = spec.get("externalTrafficPolicy") != "Local" or local
    internal_ok = spec.get("internalTrafficPolicy") != "Local" or local
    if "LoadBalancerIP" in kinds and external_ok and spec.get("loadBalancerClass") in (None, "", BGP_CLASS):
        ips += [str(i.get("ip")) for i in (status.get("loadBalancer") or {}).get("ingress") or [] if i.get("ip")]
    if "ExternalIP" in kinds and external_ok:
        ips += [str(i) for i in spec.get("externalIPs") or []]
    if "ClusterIP" in kinds and internal_ok and spec.get("clusterIP") not in (None, "", "None"):
        ips += [str(i) for i in spec.get("clusterIPs") or [spec["clusterIP"]]]
    out = []
    for ip in ips:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            continue
        length = agg if addr.version == 4 and agg else addr.max_prefixlen
        out.append(str(ipaddress.ip_network(f"{ip}/{length}", strict=False)))
    return out


def _family_routes(node: NodeInfo, afi: str, adverts: Sequence[dict[str, Any]], services: Sequence[dict[str, Any]],
                   local: set[tuple[str, str]]) -> dict[str, tuple[set[str], int | None]]:
    version = 4 if afi == "ipv4" else 6
    merged: dict[str, tuple[set[str], int | None]] = {}

    def add(prefix: str, attrs: dict[str, Any]) -> None:
        if ipaddress.ip_network(prefix).version != version:
            return
        comms = attrs.get("communities") or {}
        new = {*(comms.get("standard") or []), *(comms.get("wellKnown") or []), *(comms.get("large") or [])}
        have, pref = merged.get(prefix, (set(), None))
        lp = attrs.get("localPreference")
        merged[prefix] = (have | new, max(p for p in (pref, lp) if p is not None) if pref is not None or lp is not None
                          else None)

    for advert in adverts:
        for entry in (advert.get("spec") or {}).get("advertisements") or []:
            attrs = entry.get("attributes") or {}
            kind = entry.get("advertisementType")
            if kind == "PodCIDR":
                for cidr in node.pod_cidrs:
                    add(str(ipaddress.ip_network(cidr, strict=False)), attrs)
            elif kind == "Service":
                sel = _selector(entry.get("selector"))
                cfg = entry.get("service") or {}
                for svc in services:
                    if sel is None or not sel.matches(service_selector_labels(svc)):
                        continue
                    key = (_meta(svc).get("namespace") or "default", str(_meta(svc).get("name")))
                    for prefix in _service_prefixes(svc, cfg.get("addresses") or [], key in local,
                                                    int(cfg.get("aggregationLengthIPv4") or 0)):
                        add(prefix, attrs)
    return merged


def node_routes(node: NodeInfo, cluster_configs: Sequence[dict[str, Any]], peer_configs: Sequence[dict[str, Any]],
                adverts: Sequence[dict[str, Any]], services: Sequence[dict[str, Any]],
                slices: Sequence[dict[str, Any]]) -> list[PeerRoutes]:
    """Every (instance, peer) of this node with the routes it advertises there, sorted by prefix."""
    peers_by_name = {str(_meta(p).get("name")): p for p in peer_configs}
    local = _local_ready(slices, node.name)
    out: list[PeerRoutes] = []
    for cc in sorted(cluster_configs, key=lambda o: str(_meta(o).get("name"))):
        sel = _selector((cc.get("spec") or {}).get("nodeSelector"))
        if sel is not None and not sel.matches(node.labels):
            continue
        for inst in (cc.get("spec") or {}).get("bgpInstances") or []:
            asn = int(inst.get("localASN") or 0)
            for peer in inst.get("peers") or []:
                pr = PeerRoutes(str(inst.get("name")), asn, str(peer.get("name")), str(peer.get("peerAddress") or ""),
                                int(peer.get("peerASN") or 0))
                pc = peers_by_name.get(str((peer.get("peerConfigRef") or {}).get("name")))
                merged: dict[str, tuple[set[str], int | None]] = {}
                for fam in ((pc or {}).get("spec") or {}).get("families") or []:
                    fsel = _selector(fam.get("advertisements"))
                    chosen = [a for a in adverts if fsel is not None and fsel.matches(_meta(a).get("labels") or {})]
                    merged.update(_family_routes(node, str(fam.get("afi")), chosen, services, local))
                ibgp = pr.peer_asn == asn
                pr.routes = [Route(p, tuple(sorted(c)), lp if ibgp else None) for p, (c, lp) in sorted(merged.items())]
                out.append(pr)
    return out
