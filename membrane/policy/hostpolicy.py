"""Host policy (host firewall): the policy of a node's host endpoint, from the clusterwide rules with
``nodeSelector`` that select the node.

The host endpoint has the security identity ``host`` (1) on its own node and the labels
``reserved:host`` plus the node's own labels as ``k8s:<key>=<value>``; a CCNP's ``nodeSelector``
matches those, as Cilium matches it against the host endpoint. Resolution is the endpoints' own
(:func:`membrane.policy.resolve.resolve_selected`): default-deny per direction once a selecting rule
has items there, deny beats allow, entities and CIDRs as for pods. No named ports (the node has no
container ports).

What stays allowed once a direction is enforced, as in Cilium: the node itself (``host``, also the
allow-localhost pods get) and the ``health`` endpoint. The lab's own control plane never crosses a
device (etcd and the agents' APIs are unix sockets); what does — Hubble relay reaching every agent's
peer port, TCP 4244, between nodes — is allowed too (``CONTROL_PORTS``), so a host policy cannot cut
``membrane observe``; in tunnel routing so is the VXLAN port between nodes (the pods' traffic rides in it,
and is the pods' policy to decide). A deny in a host policy still beats these allows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from membrane.policy.mapstate import PROTOCOL_NUMBERS, PolicyEntry, ResolvedPolicy, normalize
from membrane.policy.resolve import resolve_selected
from membrane.policy.rules import EGRESS, INGRESS, Rule
from membrane.policy.selector import IdentityLabels
from membrane.policy.selectorcache import SelectorCache

HOST_IDENTITY = 1
HEALTH_IDENTITY = 4
# Endpoint id of the host endpoint in the policy map and in `endpoint list`: above every pod's
# (membrane.endpoint.model.MAX_ENDPOINT_ID is 4095), so the two never collide.
HOST_ENDPOINT_ID = 4096
CONTROL_PORTS = ((4244, "TCP"),)  # Hubble peer/observer port of every agent (the relay's way in)
_EMPTY: Mapping = MappingProxyType({})


def host_labels(node_labels: Mapping[str, str]) -> dict[str, str]:
    """The host endpoint's labels: ``reserved:host`` and each node label as ``k8s:<key>``."""
    out = {f"k8s:{k}": str(v) for k, v in node_labels.items()}
    out["reserved:host"] = ""
    return out


def host_rules(rules: Iterable[Rule], node_labels: Mapping[str, str]) -> list[Rule]:
    """The rules of host policies whose ``nodeSelector`` selects the node with ``node_labels``."""
    labels = IdentityLabels.of(host_labels(node_labels))
    return [r for r in rules if r.node_selector is not None and r.node_selector.matches(labels)]


def resolve_host(
    rules: Iterable[Rule],
    cache: SelectorCache,
    node_labels: Mapping[str, str],
    *,
    entities: Mapping[str, Iterable[int]] = _EMPTY,
    mode: str = "default",
    node_ports: Iterable[tuple[int, str]] = (),
) -> ResolvedPolicy:
    """The host endpoint's policy on the node with ``node_labels``, defaults included.

    ``rules``: every rule in force (or those whose subject selects the host identity); ``cache`` must
    know the peers' identities (a PolicyRepository's cache does). ``node_ports``: more (port, protocol)
    the nodes use between them, allowed like ``CONTROL_PORTS`` (the VXLAN port in tunnel routing).
    """
    resolved = resolve_selected(HOST_IDENTITY, host_rules(rules, node_labels), cache, entities=entities, mode=mode)
    return with_host_defaults(resolved, entities, node_ports)


def with_host_defaults(resolved: ResolvedPolicy, entities: Mapping[str, Iterable[int]] = _EMPTY,
                       node_ports: Iterable[tuple[int, str]] = ()) -> ResolvedPolicy:
    """``resolved`` plus the allows that stay in every enforced direction (module docstring)."""
    ports = (*CONTROL_PORTS, *node_ports)
    extra: set[PolicyEntry] = set()
    nodes = {int(i) for i in entities.get("remote-node", ())} | {HOST_IDENTITY}
    for direction, enforced in ((INGRESS, resolved.ingress_enforced), (EGRESS, resolved.egress_enforced)):
        if not enforced:
            continue
        extra.add(PolicyEntry(HOST_IDENTITY, direction, 0))
        extra.add(PolicyEntry(HEALTH_IDENTITY, direction, 0))
        for node in sorted(nodes):
            for port, proto in ports:
                extra.add(PolicyEntry(node, direction, PROTOCOL_NUMBERS[proto], port, 16))
    if not extra:
        return resolved
    return ResolvedPolicy(resolved.ingress_enforced, resolved.egress_enforced,
                          normalize(set(resolved.entries) | extra))
