"""The agent: composition root of one node's daemon.

Start-up order: store and mirrors → wait for this node's pod CIDR (operator or lab config) → node
datapath (sysctls, router IP, BPF programs, restored endpoints) → controllers (routes to other
nodes, node status) → local API. After start the agent needs etcd only to learn changes: the mirrors
keep the last known state and the datapath keeps forwarding if the store goes away.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from membrane.agent.api import APIServer
from membrane.agent.cni_exec import CNIExec
from membrane.agent.cni_service import CNIService
from membrane.agent.controllers import Controller, ControllerSet
from membrane.agent.egress_sync import EgressSync, local_addresses, policies_prefix
from membrane.agent.endpoint_labels import EndpointLabelSync  # [agentpod]
from membrane.agent.features import AgentFeatures
from membrane.agent.host_device import HostDevice
from membrane.agent.host_firewall import HostFirewall
from membrane.agent.identities import EndpointIdentities
from membrane.agent.introspection import AgentIntrospection
from membrane.agent.ipcache_sync import IPCacheSync
from membrane.agent.ipmasq_sync import IpMasqSync, configmaps_prefix
from membrane.agent.lb_sync import LBSync
from membrane.agent.node_network import NodeNetwork
from membrane.agent.node_routes import NodeRoutes
from membrane.agent.node_status import ROUTER_IP_ANNOTATION, NodeStatus
from membrane.agent.observability import ClusterView, Observability
from membrane.agent.peer_ports import PeerPorts
from membrane.agent.pod_objects import DecodedObjects
from membrane.agent.policy_names import PolicyNames
from membrane.agent.policy_sync import POLICY_KINDS, PolicySync
from membrane.agent.proxy_sync import ProxyManager, hubble_sink, secret_lookup
from membrane.agent.tunnel_sync import TunnelSync
from membrane.api.agent_config import AgentConfig
from membrane.datapath.linux import links
from membrane.datapath.maps.nat import HostSettings
from membrane.datapath.monitor import set_monitor_aggregation
from membrane.endpoint.encryption import WG_OVERHEAD
from membrane.endpoint.routing import NodeInfo, node_routes
from membrane.model.config import ClusterConfig
from membrane.model.encap import Encapsulation, effective_encapsulation, fit_headroom, pod_mtu_headroom
from membrane.model.event import WARNING
from membrane.policy.context import PolicyContext
from membrane.proxy.dns import DNSAnswerer, UDPListener
from membrane.proxy.dns import tcp_handler as dns_tcp_handler
from membrane.state.reconciler import Reconciler
from membrane.store.etcd import EtcdClient
from membrane.store.events import EventRecorder
from membrane.store.mirror import Mirror
from membrane.store.resources import ResourceStore
from membrane.store.watch import WatchEvent

log = logging.getLogger(__name__)
CT_GC_INTERVAL = 30.0  # seconds between conntrack garbage collections



def node_info(obj: dict[str, Any]) -> NodeInfo:
    addrs = obj.get("status", {}).get("addresses", [])
    ip = next((a["address"] for a in addrs if a.get("type") == "InternalIP"), "")
    spec = obj.get("spec", {})
    cidrs = tuple(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
    annotations = obj.get("metadata", {}).get("annotations", {}) or {}
    return NodeInfo(obj["metadata"]["name"], ip, cidrs, annotations.get("membrane.io/underlay-cidr", ""),
                    annotations.get(ROUTER_IP_ANNOTATION, ""))


class Agent(AgentFeatures, AgentIntrospection):
    def __init__(self, cfg: AgentConfig) -> None:
        self.agent_config = cfg  # this host's settings; self.config is the cluster's (from the store)
        self.node = node = cfg.node
        self.cluster = cluster = cfg.cluster
        self.etcd_endpoint = cfg.etcd_endpoint
        self.underlay_device = cfg.underlay_device
        self.pin_dir = f"{cfg.bpf_pin_dir}/{node}"
        self.state_dir = f"{cfg.state_dir}/nodes/{node}"
        self.client = EtcdClient(self.etcd_endpoint)
        self.resources = ResourceStore(self.client, cluster)
        self.prefix = f"/membrane/{cluster}"
        self.config = ClusterConfig()
        self.nodes_mirror = Mirror(self.client, f"{self.prefix}/resources/core/Node/")
        self.pods_mirror = Mirror(self.client, f"{self.prefix}/resources/core/Pod/")
        self.pod_objects = DecodedObjects(self.pods_mirror)  # each pod decoded once per revision (issue 16)
        self.ns_mirror = Mirror(self.client, f"{self.prefix}/resources/core/Namespace/")
        self.ipcache_mirror = Mirror(self.client, self.resources.layout.ipcache_prefix)
        self.policy_mirrors = [Mirror(self.client, f"{self.prefix}/resources/{kind}/") for kind in POLICY_KINDS]
        self.identity_mirror = Mirror(self.client, f"{self.resources.layout.identities_prefix}id/")
        self.services_mirror = Mirror(self.client, f"{self.prefix}/resources/core/Service/")
        self.slices_mirror = Mirror(self.client, f"{self.prefix}/resources/discovery.k8s.io/EndpointSlice/")
        self.configmaps_mirror = Mirror(self.client, configmaps_prefix(self.prefix))
        self.ipmasq = IpMasqSync(self.configmaps_mirror, lambda: self.config, lambda: self.net.datapath)
        self.cidr_groups_mirror = Mirror(self.client, f"{self.prefix}/resources/cilium.io/CiliumCIDRGroup/")
        self.ippools_mirror = Mirror(self.client, f"{self.prefix}/resources/crd.projectcalico.org/IPPool/")
        # egress gateway (agent/egress_sync.py)
        self.egress_policies_mirror = Mirror(self.client, policies_prefix(self.prefix))
        self.egress = EgressSync(node, self.egress_policies_mirror, self.pods_mirror, self.ns_mirror, self.nodes_mirror,
                                 lambda: self.config, lambda: self.net.datapath,
                                 lambda n: local_addresses(n, self.underlay_device))
        self.policy: PolicySync | None = None
        self.net = NodeNetwork(f"{self.state_dir}/state.json", self.pin_dir)
        self.host_device = HostDevice(lambda: self.net.datapath)  # from/to-netdev on the underlay device
        self.controllers = ControllerSet()
        self.api = APIServer(cfg.api_socket)
        self.started = time.time()
        self.ready_reason = "starting"
        self._stop = threading.Event()
        self.node_status = NodeStatus(self.client, self.resources, self.nodes_mirror, self.prefix, node,
                                      self.state_dir, self._me, lambda: self.net.router_ip,
                                      sockets={"apiSocket": cfg.api_socket, "hubbleSocket": cfg.hubble_socket,
                                               "metricsSocket": cfg.metrics_socket})
        self.identities: EndpointIdentities | None = None
        self._node_routes = NodeRoutes()  # [agent1k]
        self.observability: Observability | None = None
        self.lb: LBSync | None = None
        self.l2 = None  # optional features: typed in AgentFeatures
        self.bgp = None
        self.ipcache: IPCacheSync | None = None
        self.tunnel: TunnelSync | None = None
        self.wireguard = None
        self._encap_budget: int | None = None  # MTU headroom the pods got (set at start)
        self._encap_ignored = ""  # why an IPPool's encapsulation is not followed, if it is not
        self.proxy: ProxyManager | None = None  # L7 proxies (agent/proxy_sync.py)
        self.secrets_mirror = Mirror(self.client, f"{self.prefix}/resources/core/Secret/")  # headerMatches secrets

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._serve_api()  # answer STATUS/status early; ADD says "try again" until ready
        raw = self.client.get(f"{self.prefix}/config")
        if raw is not None:
            self.config = ClusterConfig.from_dict(json.loads(raw.value))
        if self.config.debug:  # debug.enabled
            logging.getLogger().setLevel(logging.DEBUG)
        for mirror in self._mirrors():
            mirror.start()
        for mirror in self._mirrors():
            mirror.wait_synced(30)
        self.ready_reason = "waiting for a pod CIDR for this node"
        pod_cidr = self._wait_pod_cidr()
        log.info("node %s: pod CIDR %s", self.node, pod_cidr)
        # Encapsulation (tunnel_sync.py): pod MTU lowered by its overhead (VXLAN 50, IPIP 20). WireGuard
        # replaces it: pod traffic between nodes goes into cilium_wg0 (not VXLAN-in-WireGuard).
        self._encap_budget = pod_mtu_headroom(self._encapsulation(), self.config.egress_gateway_enabled)
        self.net.pod_mtu -= WG_OVERHEAD if self.config.encryption_enabled else self._encap_budget
        self.net.socket_lb.enabled = self.config.socket_lb_enabled  # socket LB (bpf/sock.c)
        self.net.start(pod_cidr)
        set_monitor_aggregation(self.pin_dir, self.config.monitor_aggregation())  # Hubble traces (bpf.monitorAggregation)
        self._attach_host_device()
        self.tunnel = TunnelSync(self.node, self._nodes, self.pin_dir, self.config.tunnel_port,
                                 self._encapsulation)
        self.tunnel.start()
        tunnel_ctrl = self.controllers.add(Controller("sync-tunnel-map", self.tunnel.sync, interval=30))
        for tunnel_input in (self.nodes_mirror, self.ippools_mirror):
            tunnel_input.subscribe(lambda *_: tunnel_ctrl.trigger())
        self.node_status.start()
        self._start_wireguard()
        ipmasq_ctrl = self.controllers.add(Controller("ip-masq-agent", self.ipmasq.sync, interval=30))
        self.configmaps_mirror.subscribe(lambda *_: ipmasq_ctrl.trigger())
        self._start_egress_gateway()
        routes_ctrl = self.controllers.add(Controller("sync-node-routes", self._sync_routes, interval=30))
        self.controllers.add(Controller("node-status", self.node_status.publish, interval=5))
        labels_sync = EndpointLabelSync(self.net, self._labels_for)  # [agentpod] only pods that changed
        self.controllers.add(Controller("sync-endpoint-labels", labels_sync.sync, interval=30))
        ids = EndpointIdentities(self.client, self.resources.layout, self.node, self.cluster, self.net,
                                 self._pod, self._namespace_labels, lambda: self.node_status.endpoint_lease)
        self.identities = ids
        ipc = IPCacheSync(self.ipcache_mirror, self.resources.layout, self.node, self._nodes,
                          lambda: self.net.datapath.ipcache if self.net.datapath is not None else None,
                          lambda: self.policy.cidr_prefixes() if self.policy is not None else {},
                          node_identities=lambda: self.policy.node_cidr_identities() if self.policy is not None else {})
        self.ipcache = ipc
        peers = PeerPorts(self.pods_mirror, self.ipcache_mirror, self.resources.layout)
        host_fw = HostFirewall(self.config.host_firewall_enabled, self._node_object,  # hostFirewall.enabled
                               lambda: self.net.datapath.host_endpoint if self.net.datapath is not None else None,
                               ((self.config.tunnel_port, "UDP"),) if self.config.routing_mode == "tunnel"
                               or self.config.egress_gateway_enabled else ())  # egress gateway: VXLAN too
        policy = PolicySync(self.net, self.policy_mirrors, self.identity_mirror,
                            self.resources.layout.identities_prefix, lambda: self.config.policy_enforcement_mode,
                            self.cluster, self._pod, peer_ports=peers.table, publish_ipcache=ipc.publish,
                            context=self._policy_context, host_firewall=host_fw,
                            cidr_match_nodes=lambda: "nodes" in self.config.policy_cidr_match_mode,  # [nodes]
                            node_addresses=lambda: {n.internal_ip: n.name == self.node for n in self._nodes()
                                                    if n.internal_ip})
        self.policy = policy
        events = EventRecorder(self.resources, "cilium-agent", self.node)
        policy.on_import = lambda obj, why: events.record(
            obj, WARNING, "PolicyImportFailed" if why.startswith("policy not imported") else "PolicyNotEnforced", why)

        # L7 proxies: redirect ports for the policy map, L7 flows into Hubble (agent/proxy_sync.py)
        proxy = self.proxy = ProxyManager(self.node, self._ipcache_identity, *hubble_sink(lambda: self.observability),
                                          secret_value=secret_lookup(self.secrets_mirror))
        proxy.start(self.net.router_ip or "")
        policy.proxy_ports = proxy.ports_for
        # DNS proxy (proxy/dns.py): answers go through policy.learn_dns (toFQDNs) before they are released
        dns_answers = DNSAnswerer(policy.learn_dns)
        proxy.registry.register("dns", dns_tcp_handler(dns_answers))
        proxy.udp_factory = lambda port: UDPListener(port, proxy.describe, dns_answers)
        self.controllers.add(Controller("fqdn-gc", lambda: policy.expire_dns(), interval=5))

        def policy_run() -> None:
            before = policy.cidr_prefixes()
            policy.sync()
            proxy.retain(policy.l7_endpoints())
            if policy.cidr_prefixes() != before:  # CIDR identities a rule named: into the BPF ipcache now
                self.controllers.get("sync-bpf-ipcache").trigger()

        policy_ctrl = self.controllers.add(Controller("policy-sync", policy_run, interval=30))

        def identities_run() -> None:
            ids.sync(publish=False)
            policy_ctrl.trigger()  # identities of endpoints may have changed
            ids.publish()  # [agent1k] ipcache entries after the policy run started, not before it

        ident_ctrl = self.controllers.add(Controller("endpoint-identities", identities_run, interval=30))
        for mirror in (*self.policy_mirrors, self.identity_mirror, self.cidr_groups_mirror, self.services_mirror,
                       *((self.nodes_mirror,) if host_fw.enabled or self.config.policy_cidr_match_mode else ())):
            # nodes: their labels select host policies; their IPs CIDR rules in policyCIDRMatchMode=[nodes]
            mirror.subscribe(lambda *_: policy_ctrl.trigger())
        self.nodes_mirror.subscribe(lambda *_: routes_ctrl.trigger())

        def pods_changed(events: list[WatchEvent]) -> None:
            labels_sync.pods_changed(events)  # [agentpod]
            self.controllers.get("sync-endpoint-labels").trigger()
            ids.pods_changed(events)  # [podcpu] the identity controller looks at these pods' endpoints only
            ident_ctrl.trigger()

        self.pods_mirror.subscribe(pods_changed)
        self.ns_mirror.subscribe(lambda *_: (ids.everything_changed(), ident_ctrl.trigger()))
        self.net.on_change = ident_ctrl.trigger
        self.controllers.add(Controller("ct-gc", self._ct_gc, interval=CT_GC_INTERVAL))
        ipc_ctrl = self.controllers.add(Controller("sync-bpf-ipcache", ipc.sync, interval=30))
        self.ipcache_mirror.subscribe(lambda *_: ipc_ctrl.trigger())
        self.ipcache_mirror.subscribe(lambda *_: policy_ctrl.trigger())  # a peer's identity: its named ports
        self.nodes_mirror.subscribe(lambda *_: ipc_ctrl.trigger())
        lb = LBSync(self.node, self.services_mirror, self.slices_mirror, self.nodes_mirror, self.pods_mirror,
                    lambda: self.net.datapath.lb if self.net.datapath is not None else None,
                    lambda: self.config.lb_algorithm, lambda: self.config.maglev_table_size)
        self.lb = lb
        lb_ctrl = self.controllers.add(Controller("sync-lb-maps", lb.sync, interval=30))
        for mirror in (self.services_mirror, self.slices_mirror, self.nodes_mirror):
            mirror.subscribe(lambda *_: lb_ctrl.trigger())
        # Pods change constantly during churn; only hostPort pods feed the LB maps.
        self.pods_mirror.subscribe(lambda events: lb_ctrl.trigger() if LBSync.pods_changed_matter(events) else None)
        self._start_l2()
        self._start_bgp()
        self.observability = Observability(
            self.agent_config, self.net, self.pods_mirror, self._ipcache_identity,
            self._endpoint_states, lambda: (len(policy.repo.rules()), self.ipcache_mirror.revision),
            capacity=self.config.hubble_event_buffer_capacity, metrics_enabled=self.config.hubble_metrics_enabled,
            hubble_tls=self.config.hubble_tls_enabled,
            view=ClusterView(self.services_mirror, self.slices_mirror, self.nodes_mirror, self.policy_mirrors,
                             self.ipcache_mirror, self.resources.layout.parse_ipcache_key),
            controllers_failing=lambda: sum(not c["healthy"] for c in self.controllers.statuses()))
        self.observability.attribute_policy = PolicyNames(policy)
        self.observability.index.names_of = policy.dns_cache.names_of  # observe --fqdn (DNS proxy's names)
        try:
            self.observability.start()
        except Exception as exc:  # observability must never keep the datapath from running
            log.error("observability (Hubble, metrics) not started: %s", exc)
        self.controllers.start()
        for rec in self.reconcilers():
            rec.start()  # retries failed rows with backoff and prunes periodically, between controller runs
        self.ready_reason = ""
        log.info("agent ready on node %s (router IP %s)", self.node, self.net.router_ip)

    def run_forever(self) -> None:
        self._stop.wait()

    def stop(self) -> None:
        self._stop.set()
        if self.observability is not None:
            self.observability.stop()
        self.controllers.stop()
        if self.l2 is not None:
            self.l2.stop()
        if self.bgp is not None:
            self.bgp.stop()
        for rec in self.reconcilers():
            rec.stop()
        self.api.stop()
        for mirror in self._mirrors():
            mirror.stop()
        if self.tunnel is not None:
            self.tunnel.close()
        if self.wireguard is not None:
            self.wireguard.stop()
        if self.proxy is not None:
            self.proxy.stop()
        self.net.close()

    def reconcilers(self) -> list[Reconciler[Any, Any]]:
        """Every reconciler writing this node's BPF maps (endpoints, ipcache, policy, load balancer,
        ip-masq-agent, tunnel, egress gateway, host endpoint), the devices' programs and the WireGuard peers."""
        owners = (self.net, self.ipcache, self.policy, self.lb, self.ipmasq, self.tunnel, self.wireguard,
                  self.egress, self.policy.host_firewall if self.policy is not None else None, self.host_device)
        devices = [self.tunnel.device_reconciler] if self.tunnel is not None else []
        return [owner.reconciler for owner in owners if owner is not None] + devices

    def _attach_host_device(self) -> None:
        """from-netdev / to-netdev on the underlay device: NodePort, ExternalIPs, LB IPs, BPF masquerade."""
        me = self._me()
        if me is None or not me.internal_ip:
            raise RuntimeError(f"node {self.node} has no InternalIP")
        assert self.net.datapath is not None
        ifindex = links.link_index(self.underlay_device)
        if ifindex is None:
            raise RuntimeError(f"underlay device {self.underlay_device} not found (--underlay-device)")
        self.host_device.attach(self.underlay_device, ifindex, HostSettings(
            me.internal_ip, self.config.ipv4_native_routing_cidr, masquerade=self.config.enable_ipv4_masquerade,
            host_routing=not self.config.bpf_host_legacy_routing, ip_masq_agent=self.config.ip_masq_agent_enabled))

    def _mirrors(self) -> tuple[Mirror, ...]:
        return (self.nodes_mirror, self.pods_mirror, self.ns_mirror, self.ipcache_mirror, self.identity_mirror,
                self.services_mirror, self.slices_mirror, self.configmaps_mirror, self.cidr_groups_mirror,
                self.ippools_mirror, self.secrets_mirror, self.egress_policies_mirror, *self.policy_mirrors)

    def _encapsulation(self) -> Encapsulation:
        """The effective encapsulation; an IPPool that needs more MTU headroom than the pods got when
        the agent started is not followed (its packets would not fit the underlay): said in status."""
        c = self.config
        if c.encryption_enabled:  # WireGuard carries pod traffic between nodes instead (wireguard_sync.py)
            return Encapsulation("Never", c.encapsulation_type, "encryption")
        args = (c.routing_mode, c.tunnel_protocol, c.encapsulation_mode, c.encapsulation_type,
                c.cluster_pool_ipv4_pod_cidr_list)
        pools = [json.loads(kv.value) for kv in self.ippools_mirror.items()]
        enc, why = fit_headroom(effective_encapsulation(*args, pools), effective_encapsulation(*args, []),
                                self._encap_budget)
        if why and why != self._encap_ignored:
            log.warning("%s", why)
        self._encap_ignored = why
        return enc

    def _policy_context(self) -> PolicyContext:
        """The CIDR groups and Services policies name, from the mirrors (policy_sync compares them)."""
        return PolicyContext.from_objects(json.loads(kv.value) for mirror in (self.cidr_groups_mirror,
                                                                              self.services_mirror)
                                          for kv in mirror.items())

    def _wait_pod_cidr(self) -> str:
        while not self._stop.is_set():
            for kv in self.nodes_mirror.items():
                obj = json.loads(kv.value)
                if obj["metadata"]["name"] == self.node:
                    info = node_info(obj)
                    if info.pod_cidrs:
                        return info.pod_cidrs[0]
            time.sleep(0.2)
        raise SystemExit(0)

    # ---- controllers -----------------------------------------------------------------------------
    def _nodes(self) -> list[NodeInfo]:
        return [node_info(json.loads(kv.value)) for kv in self.nodes_mirror.items()]

    def _me(self) -> NodeInfo | None:
        return next((n for n in self._nodes() if n.name == self.node), None)

    def _sync_routes(self) -> None:
        # Tunnel mode: other nodes' pod CIDRs are reached through the tunnel, not by routes.
        # CrossSubnet reaches same-subnet nodes natively: their routes are needed whatever the setting.
        cross_subnet = self._encapsulation().mode == "CrossSubnet"
        direct = (self.config.auto_direct_node_routes or cross_subnet) and self.config.routing_mode != "tunnel"
        direct = direct and not self.config.encryption_enabled  # WireGuard routes them into cilium_wg0
        desired = node_routes(self.node, self._nodes(), self.underlay_device, direct)
        self._node_routes.sync(desired)  # [agent1k] read back only when changed or every 30 s

    def _ipcache_identity(self, ip: str) -> int:
        dp = self.net.datapath
        return dp.ipcache.identity_of(ip) if dp is not None else 0

    def _endpoint_states(self) -> dict[str, int]:
        states: dict[str, int] = {}
        for ep in self.net.endpoints.list():
            states[ep.state] = states.get(ep.state, 0) + 1
        return states

    def _pod(self, namespace: str, pod: str) -> dict[str, Any] | None:
        return self.pod_objects.get(f"{self.prefix}/resources/core/Pod/{namespace}/{pod}")  # shared: read only

    def _namespace_labels(self, namespace: str) -> dict[str, str]:
        kv = self.ns_mirror.get(f"{self.prefix}/resources/core/Namespace/_/{namespace}")
        labels = json.loads(kv.value).get("metadata", {}).get("labels") if kv is not None else None
        return dict(labels or {})

    def _labels_for(self, namespace: str, pod: str) -> dict[str, str]:
        obj = self._pod(namespace, pod)
        return dict((obj or {}).get("metadata", {}).get("labels", {}) or {})

    def _ct_gc(self) -> None:
        """Expired conntrack entries leave the map (Cilium's CT garbage collector)."""
        dp = self.net.datapath
        if dp is not None and (removed := dp.conntrack.gc()):
            log.info("conntrack gc: %d expired entries removed", removed)

    # ---- API ---------------------------------------------------------------------------------------
    def _serve_api(self) -> None:
        cni = CNIService(self.net, self._labels_for, lambda: self.ready_reason)
        self.api.route("POST", "/v1/cni/add", cni.add)
        self.api.route("POST", "/v1/cni/del", cni.delete)
        self.api.route("POST", "/v1/cni/check", cni.check)
        self.api.route("POST", "/v1/cni/status", cni.status)
        self.api.route("POST", "/v1/cni/gc", cni.gc)
        cni_exec = CNIExec({"ADD": cni.add, "DEL": cni.delete, "CHECK": cni.check, "STATUS": cni.status, "GC": cni.gc})
        self.api.route("POST", "/v1/cni/exec", cni_exec.handle)  # the compiled plugin (issue 16)
        self.register_views(self.api)
        self.api.route("GET", "/healthz", lambda _b: {"ok": not self.ready_reason, "reason": self.ready_reason})
        self.api.start()

    def _node_object(self) -> dict[str, Any] | None:
        kv = self.nodes_mirror.get(f"{self.prefix}/resources/core/Node/_/{self.node}")  # cluster-scoped: "_"
        return json.loads(kv.value) if kv is not None else None
