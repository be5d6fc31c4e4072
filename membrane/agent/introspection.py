"""What the agent tells about itself over its API: status, endpoints, BPF map dumps, services.

Read-only views (the ``/v1/status``, ``/v1/endpoints``, ``/v1/bpf/*`` answers); the agent's composition
root (daemon.py) mixes them in. Shapes follow Cilium's models (StatusResponse, Endpoint) where one exists.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from membrane.agent.controllers import reconciler_status
from membrane.agent.node_status import timestamp
from membrane.fqdn.cache import cache_rows

if TYPE_CHECKING:
    from membrane.agent.api import APIServer
    from membrane.agent.bgp_speaker import BGPSpeaker
    from membrane.agent.controllers import ControllerSet
    from membrane.agent.egress_sync import EgressSync
    from membrane.agent.identities import EndpointIdentities
    from membrane.agent.ipmasq_sync import IpMasqSync
    from membrane.agent.l2_announcer import L2Announcer
    from membrane.agent.lb_sync import LBSync
    from membrane.agent.node_network import NodeNetwork
    from membrane.agent.observability import Observability
    from membrane.agent.policy_sync import PolicySync
    from membrane.agent.proxy_sync import ProxyManager
    from membrane.agent.tunnel_sync import TunnelSync
    from membrane.agent.wireguard_sync import WireguardSync
    from membrane.endpoint.routing import NodeInfo
    from membrane.model.config import ClusterConfig
    from membrane.model.encap import Encapsulation
    from membrane.state.reconciler import Reconciler
    from membrane.store.mirror import Mirror

VERSION = "0.1.0"


class AgentIntrospection:
    """The read-only API views of an Agent; the attributes below are the agent's."""

    node: str
    etcd_endpoint: str
    underlay_device: str
    ready_reason: str
    config: ClusterConfig
    net: NodeNetwork
    nodes_mirror: Mirror
    pods_mirror: Mirror
    controllers: ControllerSet
    ipmasq: IpMasqSync
    egress: EgressSync
    identities: EndpointIdentities | None
    observability: Observability | None
    lb: LBSync | None
    l2: L2Announcer | None
    tunnel: TunnelSync | None
    wireguard: WireguardSync | None
    _encap_ignored: str
    policy: PolicySync | None
    bgp: BGPSpeaker | None
    proxy: ProxyManager | None

    def _nodes(self) -> list[NodeInfo]:
        raise NotImplementedError

    def _me(self) -> NodeInfo | None:
        raise NotImplementedError

    def _encapsulation(self) -> Encapsulation:
        raise NotImplementedError

    def reconcilers(self) -> list[Reconciler[Any, Any]]:
        raise NotImplementedError

    def endpoint_list(self) -> list[dict[str, Any]]:
        """Endpoints in the shape of Cilium's models.Endpoint, plus our own flat fields."""
        out = []
        for ep in self.net.endpoints.list():
            labels = self.identities.security_labels(ep.key) if self.identities is not None else None
            if labels is None:
                labels = sorted([f"k8s:{k}={v}" for k, v in ep.labels.items()]
                                + [f"k8s:io.kubernetes.pod.namespace={ep.namespace}"])
            out.append({
                "id": ep.id,
                "status": {
                    "identity": {"id": ep.identity} if ep.identity else {},
                    "labels": {"security-relevant": labels},
                    "networking": {"addressing": [{"ipv4": ep.ipv4}], "interface-name": ep.host_ifname,
                                   "interface-index": ep.host_ifindex, "mac": ep.pod_mac, "host-mac": ep.host_mac},
                    "policy": {"realized": {"policy-enabled": ep.policy_enabled}},
                    "state": ep.state,
                    "external-identifiers": {"container-id": ep.container_id, "pod-name": ep.pod_key},
                },
                "namespace": ep.namespace,
                "pod_name": ep.pod_name,
                "labels": ep.labels,
                "ipv4": ep.ipv4,
                "host_ifname": ep.host_ifname,
            })
        if self.policy is not None and self.policy.host_firewall is not None:  # the host endpoint (host firewall)
            me = self._me()
            ips = [ip for ip in (me.internal_ip, me.router_ip) if ip] if me is not None else []
            out.extend(self.policy.host_firewall.endpoint_rows(ips, self.policy.host_resolved()))
        return out

    def bpf_policy(self) -> list[dict[str, Any]]:
        dp = self.net.datapath
        if dp is None:
            return []
        out = []
        for slot, state in sorted(dp.policy.items().items()):
            out.append({"endpoint": slot.ep_id, "direction": "ingress" if slot.direction == 1 else "egress",
                        "identity": slot.identity, "protocol": slot.protocol, "port": slot.port,
                        "port_prefix": slot.port_prefix, "verdict": "deny" if state.verdict.deny else "allow",
                        "packets": state.packets, "bytes": state.bytes, "proxy_port": state.verdict.proxy_port})
        return out

    def _kpr_status(self) -> dict[str, Any]:
        me = next((n for n in self._nodes() if n.name == self.node), None)
        maglev = self.config.lb_algorithm == "maglev"
        return {
            "mode": "True", "device-list": [{"name": self.underlay_device, "ip": [me.internal_ip] if me else []}],
            "direct-routing-device": self.underlay_device,
            "features": {
                "nodePort": {"enabled": True, "mode": "SNAT", "algorithm": "Maglev" if maglev else "Random",
                             "lutSize": self.config.maglev_table_size, "portMin": 30000, "portMax": 32767,
                             "acceleration": "Disabled"},
                "externalIPs": {"enabled": True}, "hostPort": {"enabled": True},
                "sessionAffinity": {"enabled": True}, "gracefulTermination": {"enabled": True},
                "socketLB": {"enabled": self.net.socket_lb.active}, "socketLBTracing": {"enabled": False},
                "bpfSocketLBHostnsOnly": False, "nat46X64": {"enabled": False}, "annotations": [],
            },
        }

    def bpf_nat(self) -> list[dict[str, str]]:
        dp = self.net.datapath
        return [{"text": rec.describe()} for rec in dp.nat.entries()] if dp is not None else []

    def bpf_lb(self) -> dict[str, Any]:
        dp = self.net.datapath
        if dp is None:
            return {"services": [], "revnat": []}
        return {"services": [[r.service, f"{r.backend} ({r.rev_nat_index}) ({r.slot})"] for r in dp.lb.services()],
                "revnat": [[str(i), addr] for i, addr in dp.lb.revnat()]}

    def service_list(self) -> list[dict[str, Any]]:
        if self.lb is None:
            return []
        return [{"id": fe.id, "frontend": fe.address, "type": fe.type, "service": fe.service,
                 "backends": [b.address + (" (terminating)" if b.terminating else "") for b in fe.backends]}
                for fe in self.lb.frontends()]

    def bpf_ct(self) -> list[dict[str, str]]:
        dp = self.net.datapath
        return [{"text": row.describe()} for row in dp.conntrack.rows()] if dp is not None else []

    def bpf_ct_flush(self) -> dict[str, int]:
        dp = self.net.datapath
        return {"flushed": dp.conntrack.flush() if dp is not None else 0}

    def bpf_ipcache(self) -> list[list[str]]:
        dp = self.net.datapath
        return [list(row) for row in dp.ipcache.rows()] if dp is not None else []

    def status(self) -> dict[str, Any]:
        """Agent status in the vocabulary of Cilium's models.StatusResponse (see membrane.cli.dbg_status)."""
        mirror_ok = self.nodes_mirror.healthy and self.pods_mirror.healthy
        err = self.nodes_mirror.last_error or self.pods_mirror.last_error or ""
        ipam: dict[str, Any] = {}
        if self.net.allocator is not None:
            used = self.net.allocator.used()
            ipam = {"ipv4": {"allocated": len(used), "capacity": self.net.allocator.capacity,
                             "cidr": self.net.pod_cidr}, "allocations": used}
        controllers = []
        health = []
        for c in self.controllers.statuses():
            controllers.append({"name": c["name"], "status": {
                "success-count": c["success_count"], "failure-count": c["failure_count"],
                "consecutive-failure-count": c["consecutive_failures"],
                "last-success-timestamp": timestamp(c["last_success"]), "last-failure-timestamp": timestamp(c["last_failure"]),
                "last-failure-msg": c["last_error"]}})
            health.append({"module-id": f"agent.controller.{c['name']}", "level": "OK" if c["healthy"] else "Degraded",
                           "message": c["last_error"] if not c["healthy"] else "running"})
        reconcilers = [reconciler_status(rec.health().to_dict()) for rec in self.reconcilers()]
        for r in reconcilers:
            health.append({"module-id": f"agent.reconciler.{r['name']}", "level": "OK" if r["healthy"] else "Degraded",
                           "message": r["last-error"] if not r["healthy"] else f"{r['rows']} rows applied"})
        return {
            "node": self.node,
            "ready": not self.ready_reason,
            "kvstore": {"state": "Ok" if mirror_ok else "Failure",
                        "msg": f"etcd: 1/1 connected: {self.etcd_endpoint}" if mirror_ok
                        else f"etcd: 0/1 connected: {self.etcd_endpoint}: {err}"},
            "kubernetes": {"state": "Disabled", "msg": ""},
            "membrane": {"state": "Ok" if not self.ready_reason else "Warning",
                         "msg": f"{VERSION} (node {self.node})" if not self.ready_reason else self.ready_reason},
            "ipam": ipam,
            "routing": {**self._routing_status(),
                        "intra-host-routing-mode": "Legacy" if self.config.bpf_host_legacy_routing else "BPF"},
            "attach-mode": "tc",
            "datapath-mode": "veth",
            "kube-proxy-replacement": self._kpr_status(),
            "masquerading": {"enabled": self.config.enable_ipv4_masquerade, "mode": "BPF",
                             "enabledProtocols": {"ipv4": self.config.enable_ipv4_masquerade, "ipv6": False},
                             "snat-exclusion-cidr-v4": self.config.ipv4_native_routing_cidr,
                             "ip-masq-agent": self.config.ip_masq_agent_enabled,
                             "ip-masq-agent-status": self.ipmasq.status()},
            "controllers": controllers,
            "reconcilers": reconcilers,
            "identity-range": {"min-identity": 256, "max-identity": 65535},
            "modules-health": health,
            "endpoint-count": len(self.net.endpoints),
            "endpoint-regeneration": self.net.stats.summary(),  # pod start, by stage (issue 16)
            "router-ip": self.net.router_ip,
            "datapath-metrics": self.net.metrics(),
            "hubble": self.observability.status() if self.observability is not None else {"state": "Disabled"},
            "l2-announcements": self.l2.status() if self.l2 is not None else {"enabled": False},
            "encryption": self._encryption(),
            "egress-gateway": self.egress.status(),  # rendered by membrane.cli.egress_status
            "bgp": self.bgp.status() if self.bgp is not None else {"enabled": False},
            **({"proxy": self.proxy.status()} if self.proxy is not None else {}),
        }

    def register_views(self, api: APIServer) -> None:
        """The routes that show the agent's state (and flush conntrack or the DNS cache); the CNI and health
        routes are the daemon's."""
        api.route("GET", "/v1/status", lambda _b: self.status())
        api.route("GET", "/v1/config", lambda _b: {"config": self.config.to_dict()})
        api.route("GET", "/v1/endpoints", lambda _b: self.endpoint_list())
        api.route("GET", "/v1/bpf/ipcache", lambda _b: self.bpf_ipcache())
        api.route("GET", "/v1/bpf/policy", lambda _b: self.bpf_policy())
        api.route("GET", "/v1/bpf/ct", lambda _b: self.bpf_ct())
        api.route("POST", "/v1/bpf/ct/flush", lambda _b: self.bpf_ct_flush())
        api.route("GET", "/v1/bpf/lb", lambda _b: self.bpf_lb())
        api.route("GET", "/v1/bpf/nat", lambda _b: self.bpf_nat())
        api.route("GET", "/v1/bpf/tunnel", lambda _b: self.tunnel.entries() if self.tunnel else [])
        api.route("GET", "/v1/encrypt/status", lambda _b: self._encryption())
        api.route("GET", "/v1/bpf/ipmasq", lambda _b: [str(p) for p in self.ipmasq.prefixes()])
        api.route("GET", "/v1/services", lambda _b: self.service_list())
        api.route("GET", "/v1/bpf/l2", lambda _b: self.l2.entries() if self.l2 else [])
        api.route("GET", "/v1/bgp/peers", lambda _b: self.bgp.peers() if self.bgp and self.bgp.enabled else [])
        api.route("GET", "/v1/bgp/routes", lambda _b: self.bgp.routes() if self.bgp and self.bgp.enabled else {})
        api.route("GET", "/v1/policy/resolved", lambda _b: self.policy.resolved() if self.policy else [])
        api.route("GET", "/v1/fqdn/cache", lambda _b: cache_rows(self.policy.dns_cache, time.monotonic(),
                                                                      time.time()) if self.policy else [])
        api.route("POST", "/v1/fqdn/cache/clean",
                       lambda _b: {"cleaned": self.policy.clean_dns() if self.policy else 0})

    def _routing_status(self) -> dict[str, Any]:
        """Tunnel [vxlan] (routingMode=tunnel or encapsulation Always), Tunnel [ipip, CrossSubnet] …; with
        routingMode=tunnel and WireGuard on, Tunnel [wireguard]: WireGuard carries pod traffic instead of VXLAN."""
        enc = self._encapsulation()
        if self.config.encryption_enabled and self.config.routing_mode == "tunnel":
            return {"inter-host-routing-mode": "Tunnel", "tunnel-protocol": "wireguard",
                    "encapsulation": {"mode": enc.mode, "type": enc.type, "source": enc.source, "ignored": ""}}
        return {"inter-host-routing-mode": "Tunnel" if enc.enabled else "Native",
                "tunnel-protocol": enc.describe() if enc.enabled else self.config.tunnel_protocol,
                "encapsulation": {"mode": enc.mode, "type": enc.type, "source": enc.source,
                                  "ignored": self._encap_ignored}}

    def _encryption(self) -> dict[str, Any]:
        return self.wireguard.status() if self.wireguard is not None else {"mode": "Disabled", "msg": ""}
