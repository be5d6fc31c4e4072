"""Egress gateway on this node: keep mb_egress_v4 equal to the rows membrane.egressgw.rows computes
from the store's CiliumEgressGatewayPolicies, pods, namespaces and nodes (egressGateway.enabled).

Every node holds every row (as Cilium's agents do): the source node reads the gateway IP to send the
packet there, the gateway node reads the egress IP to SNAT it. The egress IP of a gateway that is
this node is resolved from this node's devices (membrane.datapath.linux.addresses). The rows are a
desired table written by a reconciler (ops in membrane.datapath.maps.egress_ops). A policy in the
store that does not parse (apply refuses those; only a store written by other means) is skipped and
reported in the status. ``/v1/bpf/egress`` serves ``membrane bpf egress list``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from membrane.datapath.linux.addresses import default_route_device, device_addresses
from membrane.datapath.loader import NodeDatapath
from membrane.datapath.maps.egress_ops import EgressOps
from membrane.egressgw.rows import GatewayNode, LocalAddresses, SourcePod, egress_rows
from membrane.model.config import ClusterConfig
from membrane.model.egress_gw import EgressPolicy, parse_egress_policy
from membrane.model.errors import ValidationError
from membrane.model.pod import pod_host_network, pod_labels, pod_node_name
from membrane.state.reconciler import Reconciler
from membrane.state.table import Table
from membrane.store.mirror import Mirror

log = logging.getLogger(__name__)

Row = tuple[tuple[str, str], tuple[str, str]]


def policies_prefix(store_prefix: str) -> str:
    return f"{store_prefix}/resources/cilium.io/CiliumEgressGatewayPolicy/"


def source_pod(obj: dict[str, Any]) -> SourcePod | None:
    if pod_host_network(obj):
        return None
    meta = obj.get("metadata") or {}
    ip = str((obj.get("status") or {}).get("podIP") or "")
    return SourcePod(str(meta.get("namespace", "default")), str(meta.get("name", "")), ip, pod_node_name(obj),
                     pod_labels(obj), str(meta.get("uid") or ""))


def gateway_node(obj: dict[str, Any]) -> GatewayNode:
    meta = obj.get("metadata") or {}
    addrs = (obj.get("status") or {}).get("addresses") or []
    ip = next((a.get("address", "") for a in addrs if a.get("type") == "InternalIP"), "")
    spec = obj.get("spec") or {}
    cidrs = tuple(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
    return GatewayNode(str(meta.get("name", "")), ip, dict(meta.get("labels") or {}), cidrs)


def local_addresses(node: str, fallback_device: str = "") -> LocalAddresses:
    """This node's devices; without a default route (single-subnet labs route only the world's
    prefixes) the underlay device stands in for the default-route device."""
    return LocalAddresses(node, device_addresses(), default_route_device() or fallback_device)


class EgressSync:
    def __init__(self, node: str, policies: Mirror, pods: Mirror, namespaces: Mirror, nodes: Mirror,
                 config: Callable[[], ClusterConfig], datapath: Callable[[], NodeDatapath | None],
                 local: Callable[[str], LocalAddresses] = local_addresses) -> None:
        self.node = node
        self.policies = policies
        self._pods, self._namespaces, self._nodes = pods, namespaces, nodes
        self._config = config
        self._datapath = datapath
        self._local = local
        self.errors: dict[str, str] = {}  # policy name -> why it is skipped
        self.policy_count = 0  # policies applied at the last sync
        self.table: Table[tuple[str, str], tuple[str, str]] = Table("egress", initialized=False)
        self.reconciler: Reconciler[tuple[str, str], tuple[str, str]] = Reconciler(
            self.table, EgressOps(lambda: dp.egress if (dp := self._datapath()) is not None else None,
                                  self.table.items),
            name="bpf-egress", prune_interval=60.0)

    def _policies(self) -> list[EgressPolicy]:
        out, errors = [], {}
        for kv in self.policies.items():
            obj = json.loads(kv.value)
            name = str((obj.get("metadata") or {}).get("name", kv.key))
            try:
                out.append(parse_egress_policy(obj))
            except ValidationError as exc:
                errors[name] = str(exc)
        for name, why in errors.items():
            if self.errors.get(name) != why:
                log.error("CiliumEgressGatewayPolicy %s skipped: %s", name, why)
        self.errors = errors
        self.policy_count = len(out)
        return out

    def wanted(self) -> dict[tuple[str, str], tuple[str, str]]:
        cfg = self._config()
        if not cfg.egress_gateway_enabled:
            return {}
        policies = self._policies()
        if not policies:
            return {}
        pods = [p for kv in self._pods.items() if (p := source_pod(json.loads(kv.value))) is not None]
        namespaces = {}
        for kv in self._namespaces.items():
            meta = json.loads(kv.value).get("metadata") or {}
            namespaces[str(meta.get("name", ""))] = dict(meta.get("labels") or {})
        nodes = [gateway_node(json.loads(kv.value)) for kv in self._nodes.items()]
        rows = egress_rows(policies, pods, nodes, namespaces, self._local(self.node),
                           cfg.cluster_pool_ipv4_pod_cidr_list)
        return {(k.source_ip, k.destination): (t.gateway_ip, t.egress_ip) for k, t in rows.items()}

    def sync(self) -> None:
        if self._datapath() is None:
            return
        rows = self.wanted()
        if rows != self.table.items():
            log.info("egress gateway: %d rows", len(rows))
        self.table.replace_all(rows)
        self.table.mark_initialized()
        self.reconciler.run_once()

    def entries(self) -> list[dict[str, str]]:
        """The map as ``membrane bpf egress list`` shows it (sorted by source, then destination)."""
        dp = self._datapath()
        if dp is None:
            return []
        return [{"source": src, "destination": dst, "gateway": gw, "egress": eip}
                for (src, dst), (gw, eip) in sorted(dp.egress.entries().items())]

    def status(self) -> dict[str, Any]:
        return {"enabled": self._config().egress_gateway_enabled, "rows": len(self.table.items()),
                "policies": self.policy_count, "skipped-policies": dict(self.errors)}
