"""The BGP sessions one node runs, from Cilium's BGP v2 resources (§5.5): what a speaker is configured with.

``node_sessions(node, node_ip, cluster_configs, peer_configs, overrides)`` returns, per selected
instance, its local ASN, router ID and listen port, and per peer the settings its CiliumBGPPeerConfig
gives (Cilium's defaults where unset) with the node's CiliumBGPNodeConfigOverride applied (router ID,
local ASN and port of the instance; local address and port of a peer). The routes each peer gets are
membrane.bgp.advertisements' business; this module is only about the sessions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from membrane.model.labels import LabelSelector

DEFAULT_PEER_PORT = 179
DEFAULT_CONNECT_RETRY = 120
DEFAULT_HOLD = 90
DEFAULT_KEEPALIVE = 30
DEFAULT_RESTART_TIME = 120


@dataclass(frozen=True)
class PeerSession:
    name: str
    address: str
    peer_asn: int  # 0: learn it from the peer's OPEN
    peer_port: int = DEFAULT_PEER_PORT
    local_address: str = ""
    local_port: int | None = None
    connect_retry: int = DEFAULT_CONNECT_RETRY
    hold_time: int = DEFAULT_HOLD
    keepalive: int = DEFAULT_KEEPALIVE
    graceful_restart: bool = False
    restart_time: int = DEFAULT_RESTART_TIME
    ebgp_multihop: int = 1
    families: tuple[str, ...] = ()  # "ipv4/unicast", ...; empty: both negotiated, nothing advertised
    peer_config: str = ""


@dataclass(frozen=True)
class InstanceSession:
    name: str
    local_asn: int
    router_id: str
    local_port: int | None = None  # unset: do not listen, only initiate
    peers: tuple[PeerSession, ...] = field(default_factory=tuple)


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _spec(obj: dict[str, Any] | None) -> dict[str, Any]:
    return (obj or {}).get("spec") or {}


def selects_node(cluster_config: dict[str, Any], labels: dict[str, str]) -> bool:
    sel = _spec(cluster_config).get("nodeSelector")
    return sel is None or LabelSelector.from_dict(sel, "nodeSelector").matches(labels)


def _peer(peer: dict[str, Any], pc: dict[str, Any] | None, override: dict[str, Any]) -> PeerSession:
    spec = _spec(pc)
    transport = spec.get("transport") or {}
    timers = spec.get("timers") or {}
    gr = spec.get("gracefulRestart") or {}
    families = tuple(f"{f.get('afi')}/{f.get('safi')}" for f in spec.get("families") or [])
    local_port = override.get("localPort") or transport.get("localPort")
    return PeerSession(
        name=str(peer.get("name")), address=str(peer.get("peerAddress") or ""), peer_asn=int(peer.get("peerASN") or 0),
        peer_port=int(transport.get("peerPort") or DEFAULT_PEER_PORT),
        local_address=str(override.get("localAddress") or ""),
        local_port=int(local_port) if local_port else None,
        connect_retry=int(timers.get("connectRetryTimeSeconds") or DEFAULT_CONNECT_RETRY),
        hold_time=int(timers.get("holdTimeSeconds") or DEFAULT_HOLD),
        keepalive=int(timers.get("keepAliveTimeSeconds") or DEFAULT_KEEPALIVE),
        graceful_restart=bool(gr.get("enabled")), restart_time=int(gr.get("restartTimeSeconds") or DEFAULT_RESTART_TIME),
        ebgp_multihop=int(spec.get("ebgpMultihop") or 1), families=families,
        peer_config=str((peer.get("peerConfigRef") or {}).get("name") or ""),
    )


def node_sessions(node: str, labels: dict[str, str], node_ip: str, cluster_configs: Sequence[dict[str, Any]],
                  peer_configs: Sequence[dict[str, Any]], overrides: Sequence[dict[str, Any]]) -> list[InstanceSession]:
    """Every instance this node runs, sorted by cluster config then instance order; peers without an address
    (``autoDiscovery``) are left out: Membrane has no default-gateway discovery yet."""
    pcs = {str(_meta(p).get("name")): p for p in peer_configs}
    mine = next((o for o in overrides if _meta(o).get("name") == node), None)
    ov_instances = {str(i.get("name")): i for i in _spec(mine).get("bgpInstances") or []}
    out: list[InstanceSession] = []
    for cc in sorted(cluster_configs, key=lambda o: str(_meta(o).get("name"))):
        if not selects_node(cc, labels):
            continue
        for inst in _spec(cc).get("bgpInstances") or []:
            ov = ov_instances.get(str(inst.get("name")), {})
            ov_peers = {str(p.get("name")): p for p in ov.get("peers") or []}
            peers = tuple(_peer(p, pcs.get(str((p.get("peerConfigRef") or {}).get("name"))), ov_peers.get(str(p.get("name")), {}))
                          for p in inst.get("peers") or [] if p.get("peerAddress"))
            port = ov.get("localPort") or inst.get("localPort")
            out.append(InstanceSession(
                name=str(inst.get("name")), local_asn=int(ov.get("localASN") or inst.get("localASN") or 0),
                router_id=str(ov.get("routerID") or node_ip), local_port=int(port) if port else None, peers=peers))
    return out
