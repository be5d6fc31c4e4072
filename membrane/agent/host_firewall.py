"""The host endpoint of this node (hostFirewall.enabled): its policy, its datapath entry, its row in
``endpoint list``.

The policy controller (:mod:`membrane.agent.policy_sync`) resolves the host endpoint with the pods
(:func:`membrane.policy.hostpolicy.resolve_host`) and writes its rows into the same policy map under
``HOST_ENDPOINT_ID``; this object owns mb_host_ep, the switch bpf/lib/host_firewall.h reads, as a
one-row desired table written by its reconciler (``bpf-host-ep``, ops in
membrane.datapath.maps.host_endpoint_ops). With the host firewall off the entry is cleared at start (a
pinned map may hold an earlier lab's), so the node's traffic is neither tracked nor filtered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from membrane.agent.ipcache_sync import NotApplied
from membrane.datapath.maps.host_endpoint import HostEndpointMap, HostEndpointState
from membrane.datapath.maps.host_endpoint_ops import HOST_EP_ROW, HostEndpointOps
from membrane.policy.hostpolicy import HOST_ENDPOINT_ID, HOST_IDENTITY, host_labels, resolve_host
from membrane.policy.mapstate import ResolvedPolicy
from membrane.policy.repository import PolicyRepository
from membrane.state.reconciler import Reconciler
from membrane.state.table import Table

log = logging.getLogger(__name__)

_POLICY_ENABLED = {(False, False): "none", (True, False): "ingress", (False, True): "egress", (True, True): "both"}


class HostFirewall:
    """``enabled``: the Helm value; ``node``: this node's Node object (None until it is known);
    ``target``: the datapath's mb_host_ep (None while there is no datapath); ``node_ports``: see
    :func:`membrane.policy.hostpolicy.resolve_host`."""

    def __init__(self, enabled: bool, node: Callable[[], Mapping[str, Any] | None],
                 target: Callable[[], HostEndpointMap | None], node_ports: tuple[tuple[int, str], ...] = ()) -> None:
        self.enabled = enabled
        self.node_ports = node_ports  # (port, protocol) nodes use between them: the VXLAN port in tunnel routing
        self._node = node
        self._target = target
        self._written: HostEndpointState | None = None  # what the reconciler last confirmed in mb_host_ep
        self.table: Table[int, HostEndpointState] = Table("host-endpoint")
        self.reconciler: Reconciler[int, HostEndpointState] = Reconciler(
            self.table, HostEndpointOps(target, self.table.items), name="bpf-host-ep", prune_interval=60.0)
        self._labels: dict[str, str] | None = None  # node labels of the last resolution

    def node_labels(self) -> dict[str, str]:
        obj = self._node() or {}
        return {str(k): str(v) for k, v in ((obj.get("metadata") or {}).get("labels") or {}).items()}

    def resolve(self, repo: PolicyRepository, entities: Mapping[str, Any], mode: str, *,
                stale: bool) -> ResolvedPolicy | None:
        """The host endpoint's policy if it may have changed (``stale``, or the node's labels changed);
        None when it cannot have, or the host firewall is off."""
        if not self.enabled:
            return None
        labels = self.node_labels()
        if not stale and labels == self._labels:
            return None
        self._labels = labels
        return resolve_host(repo.selecting(HOST_IDENTITY), repo.cache, labels, entities=entities, mode=mode,
                            node_ports=self.node_ports)

    def enforce_policy(self, resolved: ResolvedPolicy | None, *, gaining: bool) -> None:
        """mb_host_ep's flags for ``resolved``: before its rows are written only what stays enforced
        (``gaining`` False), after it everything the policy enforces (as the pods' flags go)."""
        ing, egr = (resolved.ingress_enforced, resolved.egress_enforced) if resolved is not None else (False, False)
        if not gaining:
            now = self._written
            ing, egr = (ing and now.ingress, egr and now.egress) if now is not None else (False, False)
        self.enforce(ing, egr)

    def state(self) -> HostEndpointState | None:
        """What was last written to mb_host_ep (None: nothing yet)."""
        return self._written

    def enforce(self, ingress: bool, egress: bool) -> None:
        """The host endpoint with these directions enforced (off entirely when disabled), through the
        reconciler; ``state()`` follows only once it is in the map."""
        want = HostEndpointState(HOST_ENDPOINT_ID, ingress, egress) if self.enabled else HostEndpointState()
        if want == self._written:
            return
        self.table.upsert(HOST_EP_ROW, want)
        self.reconciler.run_once()  # in the caller's thread: the policy controller orders rows and flags
        behind = self.reconciler.not_done([HOST_EP_ROW]).get(HOST_EP_ROW)
        if behind is not None:  # the reconciler retries the row; the next call checks again
            if self._target() is None:
                return  # no datapath yet: nothing to order against
            raise NotApplied(f"mb_host_ep: {want} not applied: {behind.message}")
        if self._written is None or (self._written.ingress, self._written.egress) != (want.ingress, want.egress):
            log.info("host endpoint %d: ingress %s, egress %s", want.ep_id, "enforced" if want.ingress else "open",
                     "enforced" if want.egress else "open")
        self._written = want

    def endpoint_rows(self, ips: list[str], resolved: ResolvedPolicy | None) -> list[dict[str, Any]]:
        """The host endpoint in ``endpoint list`` (Cilium's models.Endpoint shape), when enabled."""
        if not self.enabled:
            return []
        ingress = bool(resolved and resolved.ingress_enforced)
        egress = bool(resolved and resolved.egress_enforced)
        labels = sorted(f"{k}={v}" if v else k for k, v in host_labels(self.node_labels()).items())
        return [{
            "id": HOST_ENDPOINT_ID,
            "status": {
                "identity": {"id": HOST_IDENTITY},
                "labels": {"security-relevant": labels},
                "networking": {"addressing": [{"ipv4": ip} for ip in ips] or [{"ipv4": ""}]},
                "policy": {"realized": {"policy-enabled": _POLICY_ENABLED[(ingress, egress)]}},
                "state": "ready",
                "external-identifiers": {},
            },
            "namespace": "",
            "pod_name": "",
            "labels": {k: v for k, v in host_labels(self.node_labels()).items()},
            "ipv4": ips[0] if ips else "",
            "host_ifname": "",
            "host": True,
        }]
