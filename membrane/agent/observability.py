"""The agent's observability: flow ring + Observer gRPC server (Hubble API) and the /metrics endpoint.

Sockets (under the agent's ``--run-dir``): ``hubble-<node>.sock`` (local, mode 0660) and TCP :4244 in the node's
namespace for the Observer API. TCP :4244 takes only mutual TLS (``hubble.tls.enabled``, the default):
the node's server certificate from ``--tls-dir`` (default ``<run-dir>/tls``), clients must present a certificate
of the lab's Hubble CA; without its certificate files the agent serves no TCP at all rather than
plaintext. ``hubble.tls.enabled=false`` serves plaintext, as Cilium does then.

``<run-dir>/metrics-<node>.sock`` and TCP :9962 on all addresses, plaintext, serve Prometheus
metrics (the cilium_* agent metrics and the hubble_* flow metrics), where Cilium's agent binds
``prometheus.port`` (its metrics carry no flows, only counts); TCP :9965 serves the hubble_* families
alone, where Cilium serves ``hubble.metrics.port``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from membrane.agent.flows import FlowPipeline, PodIndex
from membrane.agent.hubble_feed import AgentEventFeed, ServiceResolver, peer_table
from membrane.agent.node_network import NodeNetwork
from membrane.api.agent_config import AgentConfig
from membrane.hubble import agent_events
from membrane.hubble.agent_metrics import AgentMetrics, AgentSources
from membrane.hubble.events import EndpointInfo, PolicyAttributor
from membrane.hubble.metrics import HubbleMetrics, Registry
from membrane.hubble.ring import FlowRing
from membrane.hubbleserver.observer import SERVER_PORT, ObserverServer
from membrane.hubbleserver.tls import ServerTLS, TLSConfigError
from membrane.metricsserver.server import MetricsServer
from membrane.model.node_conditions import unreachable
from membrane.store.mirror import Mirror

log = logging.getLogger(__name__)

FLOW_CAPACITY = 4095
OBSERVER_PORT = SERVER_PORT
METRICS_PORT = 9962
HUBBLE_METRICS_PORT = 9965
DEFAULT_HUBBLE_METRICS = ("flow", "drop", "tcp", "port-distribution", "icmp")


@dataclass(frozen=True)
class ClusterView:
    """The mirrors Hubble reads besides pods: Services for service-aware flows, all of them for agent
    events, nodes for the peer service. ``cidr_of`` turns an ipcache key into its prefix."""

    services: Mirror
    slices: Mirror
    nodes: Mirror
    policies: Sequence[Mirror]
    ipcache: Mirror
    cidr_of: Callable[[str], str]


class Observability:
    def __init__(self, cfg: AgentConfig, net: NodeNetwork, pods: Mirror,
                 identity_of: Callable[[str], int], endpoint_states: Callable[[], Mapping[str, int]],
                 policy_info: Callable[[], tuple[int, int]], capacity: int = FLOW_CAPACITY,
                 metrics_enabled: Sequence[str] = DEFAULT_HUBBLE_METRICS, hubble_tls: bool = True,
                 view: ClusterView | None = None, controllers_failing: Callable[[], int] | None = None) -> None:
        self.cfg = cfg
        node = cfg.node
        self.cluster = cluster = cfg.cluster
        self.view = view
        self.agent_events = AgentEventFeed(node)
        self.services: ServiceResolver | None = None
        self.hubble_tls = hubble_tls
        self.listen_problem = ""  # why TCP :4244 is not served, for `membrane status`
        self.node = node
        self.net = net
        self.started = time.time()
        self.ring = FlowRing(capacity)
        self.registry = Registry()
        self.hubble_metrics = HubbleMetrics(self.registry, list(metrics_enabled))
        self.agent_metrics = AgentMetrics(self.registry, AgentSources(
            endpoint_states=endpoint_states, policy=policy_info, datapath=self._datapath_counters,
            controllers_failing=controllers_failing, unreachable_nodes=self._unreachable_nodes))
        net.stats.subscribe(self.agent_metrics.observe_endpoint_regeneration)
        self.index = PodIndex(pods, identity_of, cluster)
        self.pipeline: FlowPipeline | None = None
        self.servers: list[Any] = []
        self.attribute_policy: PolicyAttributor | None = None  # set before start: policy names in flows

    def start(self) -> None:
        assert self.net.datapath is not None
        peers = None
        if self.view is not None:
            self._watch(self.view)
            peers = peer_table(self.view.nodes, self.cluster, OBSERVER_PORT, self.hubble_tls)
        self.agent_events.add(agent_events.agent_started(int(self.started * 1e9)))
        self.pipeline = FlowPipeline(self.node, self.net.pin_dir, self.ring, self.index.lookup,
                                     self.hubble_metrics.process, lookup_endpoint=self._endpoint_info,
                                     lookup_service=self.services.lookup if self.services is not None else None,
                                     attribute_policy=self.attribute_policy,
                                     count_keyed=self.hubble_metrics.process_keyed)
        self.pipeline.start()
        self.registry.add_collector(self._collect_lost)
        tcp_addr: str | None = f"0.0.0.0:{OBSERVER_PORT}"
        credentials = None
        if self.hubble_tls:
            tls = self.cfg.hubble_tls_dir
            cert, key = f"{tls}/hubble-server-{self.node}.crt", f"{tls}/hubble-server-{self.node}.key"
            try:
                credentials = ServerTLS(cert, key, f"{tls}/ca.crt").credentials()
            except TLSConfigError as exc:
                self.listen_problem = f"TCP :{OBSERVER_PORT} not served: TLS: {exc}"
                log.error("Hubble %s (the unix socket still serves)", self.listen_problem)
                tcp_addr = None
        own = peers.snapshot()[0].get(self.node) if peers is not None else None
        observer = ObserverServer(self.ring, self.node, self.cfg.hubble_socket,
                                  tcp_addr, tcp_credentials=credentials, address=own.address if own else "",
                                  perf_lost=self._perf_lost, agent_events=self.agent_events.ring, peers=peers,
                                  on_lost=self.hubble_metrics.lost)
        observer.start()
        self.servers.append(observer)
        for address in (self.cfg.metrics_socket, ("0.0.0.0", METRICS_PORT)):
            server = MetricsServer(address, self.registry.exposition)
            server.start()
            self.servers.append(server)
        try:  # Hubble's own metrics endpoint, as hubble.metrics.port: only the hubble_* families
            server = MetricsServer(("0.0.0.0", HUBBLE_METRICS_PORT), lambda: self.registry.exposition("hubble_"))
        except OSError as exc:
            log.error("Hubble metrics :%d not served: %s", HUBBLE_METRICS_PORT, exc)
        else:
            server.start()
            self.servers.append(server)

    def _watch(self, view: ClusterView) -> None:
        self.services = ServiceResolver(view.services, view.slices, view.nodes, self.agent_events)
        feed = self.agent_events
        feed.watch_pods(self.index.pods, self._endpoint_id)
        feed.watch_policies(view.policies)
        feed.watch_ipcache(view.ipcache, view.cidr_of)

    def _endpoint_id(self, ip: str) -> int:
        ep = self.net.endpoints.by_ip(ip)
        return ep.id if ep is not None else 0

    def _unreachable_nodes(self) -> int:
        """Other nodes of the cluster whose Ready condition is not True (their agent is gone)."""
        if self.view is None:
            return 0
        nodes = []
        for kv in self.view.nodes.items():
            try:
                nodes.append(json.loads(kv.value))
            except ValueError:
                continue
        return unreachable(nodes, self.node)

    def _perf_lost(self) -> int:
        return self.pipeline.monitor.counters().lost if self.pipeline is not None else 0

    def _collect_lost(self) -> None:
        self.hubble_metrics.lost_events.set(["perf_event_ring_buffer"], self._perf_lost())

    def _endpoint_info(self, ep_id: int) -> EndpointInfo | None:
        """The pod of a local endpoint id (the sender of a packet dropped for a spoofed source)."""
        ep = self.net.endpoints.by_id(ep_id)
        return self.index.lookup(ep.ipv4) if ep is not None else None

    def stop(self) -> None:
        if self.pipeline is not None:
            self.pipeline.stop()
        if self.services is not None:
            self.services.stop()
        for server in self.servers:
            try:
                server.stop() if isinstance(server, ObserverServer) else server.close()
            except Exception as exc:
                log.debug("stopping %s: %s", type(server).__name__, exc)

    def _datapath_counters(self) -> tuple[dict[tuple[int, str], tuple[int, int]], dict[str, tuple[int, int]]]:
        drops: dict[tuple[int, str], tuple[int, int]] = {}
        forwards: dict[str, tuple[int, int]] = {}
        for key, value in self.net.metrics().items():
            reason, direction = key.split("/")
            pair = (value["packets"], value["bytes"])
            if reason == "0":
                forwards[direction.upper()] = pair
            else:
                drops[(int(reason), direction.upper())] = pair
        return drops, forwards

    def status(self) -> dict[str, Any]:
        """The ``hubble`` section of /v1/status (see membrane.cli.dbg_status)."""
        counters = self.pipeline.monitor.counters() if self.pipeline is not None else None
        return {
            "state": ("Disabled" if self.pipeline is None else "Warning" if self.listen_problem else "Ok"),
            "msg": self.listen_problem,
            "observer": {"current-flows": len(self.ring), "max-flows": self.ring.capacity,
                         "seen-flows": self.ring.seen, "uptime": time.time() - self.started},
            "metrics": {"state": "Ok"},
            "events": dataclasses.asdict(counters) if counters is not None else {},
        }
