"""BGP control plane v2 on this node: drive the node's ExaBGP speaker from Cilium's BGP resources.

On every change to the BGP resources, Services, EndpointSlices or Nodes (and every second, which is
also how a dead speaker is noticed and restarted), ``sync``:

1. works out this node's sessions (membrane.bgp.sessions) and the routes for each peer
   (membrane.bgp.advertisements: PodCIDR and Service addresses, eTP/iTP Local honoured);
2. gives the speaker its config (a changed config restarts it; no peers: no speaker) and the routes,
   as incremental announce/withdraw lines (membrane.datapath.linux.exabgp);
3. writes ``CiliumBGPNodeConfig/<node>``: the instances it runs as ``spec`` and each peer's session
   state, routes advertised and received as ``status``, like Cilium's per-node object (deleted when
   no cluster config selects the node any more).

Any error (a resource that stopped parsing, a speaker that cannot start) is logged, kept for
``membrane status`` and retried; it never stops the agent.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from membrane.bgp.advertisements import NodeInfo, PeerRoutes, Route, node_routes
from membrane.bgp.exabgp_text import config
from membrane.bgp.sessions import InstanceSession, node_sessions
from membrane.datapath.linux.exabgp import ExaBGPSpeaker
from membrane.store.etcd import EtcdClient
from membrane.store.layout import CLUSTER_SCOPE, ResourceKey
from membrane.store.mirror import Mirror
from membrane.store.resources import ResourceStore

log = logging.getLogger(__name__)
KINDS = ("CiliumBGPClusterConfig", "CiliumBGPPeerConfig", "CiliumBGPAdvertisement", "CiliumBGPNodeConfigOverride")
STATES = {"up": "established", "connected": "active", "down": "idle"}

Me = tuple[str, dict[str, str], tuple[str, ...]]  # node IP, labels, pod CIDRs


def node_facts(nodes: Mirror, node: str) -> Me:
    """This node's InternalIP, labels and pod CIDRs from its Node object (empty until it exists)."""
    for kv in nodes.items():
        obj = json.loads(kv.value)
        meta = obj.get("metadata") or {}
        if meta.get("name") != node:
            continue
        ip = next((a["address"] for a in (obj.get("status") or {}).get("addresses") or []
                   if a.get("type") == "InternalIP"), "")
        spec = obj.get("spec") or {}
        cidrs = tuple(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
        return ip, dict(meta.get("labels") or {}), cidrs
    return "", {}, ()


class BGPSpeaker:
    def __init__(self, node: str, client: EtcdClient, resources: ResourceStore, prefix: str, enabled: bool,
                 services: Mirror, slices: Mirror, nodes: Mirror, run_dir: str) -> None:
        self.node = node
        self.enabled = enabled
        self.resources = resources
        self.mirrors = {k: Mirror(client, f"{prefix}/resources/cilium.io/{k}/") for k in KINDS}
        self.services = services
        self.slices = slices
        self.me = lambda: node_facts(nodes, node)
        self.speaker = ExaBGPSpeaker(run_dir)
        self.instances: list[InstanceSession] = []
        self.peer_routes: list[PeerRoutes] = []
        self.route_age: dict[str, float] = {}
        self.errors: list[str] = []
        self._written: dict[str, Any] | None = None

    def start(self, trigger: Callable[[], None]) -> None:
        for m in self.mirrors.values():
            m.subscribe(lambda *_: trigger())
            m.start()

    def stop(self) -> None:
        for m in self.mirrors.values():
            m.stop()
        self.speaker.stop()

    def _objects(self, mirror: Mirror) -> list[dict[str, Any]]:
        return [json.loads(kv.value) for kv in mirror.items()]

    def sync(self) -> None:
        if not self.enabled:
            return
        self.errors = []
        ip, labels, pod_cidrs = self.me()
        if not ip:
            return
        objs = {k: self._objects(m) for k, m in self.mirrors.items()}
        try:
            self.instances = node_sessions(self.node, labels, ip, objs["CiliumBGPClusterConfig"],
                                           objs["CiliumBGPPeerConfig"], objs["CiliumBGPNodeConfigOverride"])
            self.peer_routes = node_routes(NodeInfo(self.node, labels, pod_cidrs), objs["CiliumBGPClusterConfig"],
                                           objs["CiliumBGPPeerConfig"], objs["CiliumBGPAdvertisement"],
                                           self._objects(self.services), self._objects(self.slices))
        except Exception as exc:  # a stored object the validators of today would refuse
            self.errors.append(f"BGP resources: {exc}")
            log.warning("BGP: %s", exc)
            return
        has_peers = any(i.peers for i in self.instances)
        try:
            port = next((i.local_port for i in self.instances if i.local_port), None)  # one listener per speaker
            self.speaker.configure(config(self.instances, self.speaker.process_cmd(), ip) if has_peers else "",
                                   f"{ip}:{port}" if port and has_peers else "")
            self.speaker.ensure_running()
            desired: dict[str, dict[str, Route]] = {}
            for pr in self.peer_routes:
                desired.setdefault(pr.peer_address, {}).update({r.prefix: r for r in pr.routes})
            now = time.time()
            self.route_age = {p: self.route_age.get(p, now) for routes in desired.values() for p in routes}
            if not self.speaker.advertise(desired):
                self.errors.append("speaker not accepting commands yet")
            self.speaker.error = ""
        except Exception as exc:
            self.speaker.error = str(exc)
            self.errors.append(f"speaker: {exc}")
            log.warning("BGP speaker: %s", exc)
        self._write_node_config()

    # ---- views -------------------------------------------------------------------------------------
    def peers(self) -> list[dict[str, Any]]:
        """One row per (instance, peer): ``membrane bgp peers``."""
        states = self.speaker.peer_states()
        rows = []
        for inst in self.instances:
            for peer in inst.peers:
                st = states.get(peer.address) or {}
                state = STATES.get(str(st.get("state")), "idle") if self.speaker.alive() else "idle"
                advertised = len(self.speaker.advertised.get(peer.address, {})) if state == "established" else 0
                rows.append({"instance": inst.name, "local-asn": inst.local_asn, "peer": peer.name,
                             "peer-address": peer.address, "peer-port": peer.peer_port, "peer-asn": peer.peer_asn,
                             "state": state, "since": st.get("since") or 0,
                             "families": list(peer.families) or ["ipv4/unicast", "ipv6/unicast"],
                             "received": len(st.get("received") or []), "advertised": advertised,
                             "hold-time": peer.hold_time, "keepalive": peer.keepalive})
        return rows

    def routes(self) -> dict[str, Any]:
        """``bgp routes available`` (the local RIB) and ``advertised`` (per established peer)."""
        ip = self.me()[0]
        states = self.speaker.peer_states()
        available: dict[tuple[int, str], Route] = {}
        advertised = []
        for pr in self.peer_routes:
            for r in pr.routes:
                available.setdefault((pr.local_asn, r.prefix), r)
            if str((states.get(pr.peer_address) or {}).get("state")) == "up":
                sent = self.speaker.advertised.get(pr.peer_address, {})
                advertised += [{"asn": pr.local_asn, "peer": pr.peer_address, "prefix": p, "nexthop": ip,
                                "age": self.route_age.get(p, 0), "communities": list(r.communities),
                                "local-preference": r.local_preference, "as-path": [pr.local_asn]}
                               for p, r in sorted(sent.items())]
        return {"available": [{"asn": asn, "prefix": p, "nexthop": "0.0.0.0", "age": self.route_age.get(p, 0),
                               "communities": list(r.communities), "local-preference": r.local_preference}
                              for (asn, p), r in sorted(available.items())],
                "advertised": advertised}

    def status(self) -> dict[str, Any]:
        """For the agent's page: ``Failure`` while a speaker that should run is not running."""
        peers = self.peers() if self.enabled else []
        sp = self.speaker.status()
        if not self.enabled:
            state = "Disabled"
        elif self.speaker.config_text and not sp["running"]:
            state = "Failure"
        else:
            state = "Ok"
        msg = f"speaker pid {sp['pid']}" if sp["running"] else "no speaker"
        if sp["restarts"]:
            msg += f", restarted {sp['restarts']} times (last: {sp['last-exit']})"
        return {"enabled": self.enabled, "state": state, "msg": msg, "speaker": sp,
                "peers": {f"{p['peer-address']}": p["state"] for p in peers}, "errors": self.errors}

    # ---- CiliumBGPNodeConfig --------------------------------------------------------------------------
    def _write_node_config(self) -> None:
        peers = self.peers()
        spec = {"bgpInstances": [
            {"name": i.name, "localASN": i.local_asn, "routerID": i.router_id,
             **({"localPort": i.local_port} if i.local_port else {}),
             "peers": [{"name": p.name, "peerAddress": p.address, "peerASN": p.peer_asn,
                        **({"peerConfigRef": {"name": p.peer_config}} if p.peer_config else {})} for p in i.peers]}
            for i in self.instances]}
        status = {"bgpInstances": [
            {"name": i.name, "localASN": i.local_asn, "peers": [
                {"name": r["peer"], "peerAddress": r["peer-address"], "peerASN": r["peer-asn"],
                 "peeringState": r["state"],
                 **({"establishedTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["since"]))}
                    if r["state"] == "established" else {}),
                 "timers": {"appliedHoldTimeSeconds": r["hold-time"], "appliedKeepaliveSeconds": r["hold-time"] // 3},
                 "routeCount": [{"afi": "ipv4", "safi": "unicast", "advertised": r["advertised"],
                                 "received": r["received"]}]}
                for r in peers if r["instance"] == i.name]}
            for i in self.instances]}
        obj = {"apiVersion": "cilium.io/v2", "kind": "CiliumBGPNodeConfig", "metadata": {"name": self.node},
               "spec": spec, "status": status}
        if obj == self._written:
            return
        try:
            if self.instances:
                self.resources.put_object(obj)
            else:  # no longer selected (or no BGP resources left): the node has no BGP config, as in Cilium
                self.resources.delete_many([ResourceKey("cilium.io", "CiliumBGPNodeConfig", CLUSTER_SCOPE, self.node)])
            self._written = obj
        except Exception as exc:
            self.errors.append(f"CiliumBGPNodeConfig: {exc}")
