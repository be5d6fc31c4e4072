"""Host policy resolution (membrane.policy.hostpolicy): which CCNPs with nodeSelector select a node, the
host endpoint's entries, and the allows that stay once a direction is enforced."""

from __future__ import annotations

from typing import Any

from membrane.model.validate import validate_object
from membrane.policy.hostpolicy import (
    HEALTH_IDENTITY,
    HOST_IDENTITY,
    host_labels,
    host_rules,
    resolve_host,
)
from membrane.policy.mapstate import PolicyEntry
from membrane.policy.repository import PolicyRepository
from membrane.policy.translate import origin_of, rules_from_object
from membrane.policy.unenforced import HOST_POLICY, unenforced_fields

POD = 300  # a pod identity: app=client in ns default
REMOTE_NODE = 6
W1 = {"kubernetes.io/hostname": "k8s-w1", "kubernetes.io/os": "linux"}
CTR = {"kubernetes.io/hostname": "k8s-ctr", "node-role.kubernetes.io/control-plane": ""}
TCP, UDP = 6, 17


def ccnp(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return validate_object({"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy",
                            "metadata": {"name": name}, "spec": spec}, f"{name}.yaml")


HOST_W1 = ccnp("w1-ingress", {
    "nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "k8s-w1"}},
    "ingress": [{"fromEndpoints": [{"matchLabels": {"app": "client"}}], "toPorts": [{"ports": [{"port": "8080"}]}]}],
    "ingressDeny": [{"fromEntities": ["world"], "toPorts": [{"ports": [{"port": "22", "protocol": "TCP"}]}]}],
})


def repo(*objs: dict[str, Any]) -> PolicyRepository:
    r = PolicyRepository()
    r.upsert_identity(HOST_IDENTITY, {"reserved:host": ""})
    r.upsert_identity(2, {"reserved:world": ""})
    r.upsert_identity(REMOTE_NODE, {"reserved:remote-node": ""})
    r.upsert_identity(POD, {"k8s:app": "client", "k8s:io.kubernetes.pod.namespace": "default"})
    for obj in objs:
        r.set_policy(origin_of(obj), rules_from_object(obj))
    return r


ENTITIES = {"world": [2], "remote-node": [REMOTE_NODE], "host": [HOST_IDENTITY]}


def test_node_selector_matches_the_nodes_labels_as_k8s_labels() -> None:
    rules = rules_from_object(HOST_W1)
    assert host_rules(rules, W1) == rules
    assert host_rules(rules, CTR) == []
    assert host_labels(CTR) == {"k8s:kubernetes.io/hostname": "k8s-ctr",
                                "k8s:node-role.kubernetes.io/control-plane": "", "reserved:host": ""}


def test_a_node_not_selected_has_no_enforcement_and_no_entries() -> None:
    r = repo(HOST_W1)
    resolved = resolve_host(r.selecting(HOST_IDENTITY), r.cache, CTR, entities=ENTITIES)
    assert (resolved.ingress_enforced, resolved.egress_enforced, resolved.entries) == (False, False, frozenset())


def test_the_selected_node_enforces_ingress_with_its_allows_denies_and_the_defaults() -> None:
    r = repo(HOST_W1)
    resolved = resolve_host(r.selecting(HOST_IDENTITY), r.cache, W1, entities=ENTITIES)
    assert resolved.ingress_enforced and not resolved.egress_enforced
    entries = resolved.entries
    assert PolicyEntry(POD, "ingress", TCP, 8080, 16) in entries
    assert PolicyEntry(POD, "ingress", UDP, 8080, 16) in entries
    assert PolicyEntry(2, "ingress", TCP, 22, 16, deny=True) in entries
    # what stays allowed: the node itself, health, Hubble's peer port between nodes
    assert PolicyEntry(HOST_IDENTITY, "ingress", 0) in entries
    assert PolicyEntry(HEALTH_IDENTITY, "ingress", 0) in entries
    assert PolicyEntry(REMOTE_NODE, "ingress", TCP, 4244, 16) in entries
    # nothing else: a remote node has no other port, the pod no other port, and nothing for egress
    assert PolicyEntry(REMOTE_NODE, "ingress", 0) not in entries
    assert not any(e.direction == "egress" for e in entries)


def test_egress_host_policy_and_a_deny_beating_a_default() -> None:
    obj = ccnp("all-nodes-egress", {
        "nodeSelector": {},
        "egress": [{"toEntities": ["world"], "toPorts": [{"ports": [{"port": "53", "protocol": "UDP"}]}]}],
        "egressDeny": [{"toEntities": ["remote-node"]}],
    })
    r = repo(obj)
    resolved = resolve_host(r.selecting(HOST_IDENTITY), r.cache, CTR, entities=ENTITIES)
    assert resolved.egress_enforced and not resolved.ingress_enforced
    assert PolicyEntry(2, "egress", UDP, 53, 16) in resolved.entries
    assert PolicyEntry(REMOTE_NODE, "egress", 0, deny=True) in resolved.entries
    assert PolicyEntry(REMOTE_NODE, "egress", TCP, 4244, 16) not in resolved.entries  # the deny wins


def test_pod_policies_never_reach_the_host_endpoint() -> None:
    cnp = validate_object({"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy",
                           "metadata": {"name": "all-pods"}, "spec": {"endpointSelector": {},
                                                                      "ingress": [{"fromEntities": ["world"]}]}}, "x")
    r = repo(cnp)
    resolved = resolve_host(r.rules(), r.cache, W1, entities=ENTITIES)
    assert (resolved.ingress_enforced, resolved.entries) == (False, frozenset())


def test_mode_never_enforces_nothing_and_always_enforces_both() -> None:
    r = repo(HOST_W1)
    never = resolve_host(r.rules(), r.cache, W1, entities=ENTITIES, mode="never")
    assert (never.ingress_enforced, never.egress_enforced, never.entries) == (False, False, frozenset())
    always = resolve_host(r.rules(), r.cache, CTR, entities=ENTITIES, mode="always")
    assert always.ingress_enforced and always.egress_enforced
    assert PolicyEntry(HOST_IDENTITY, "egress", 0) in always.entries


def test_the_not_enforced_note_depends_on_the_host_firewall() -> None:
    off = unenforced_fields(HOST_W1)
    assert [(u.path, u.reason) for u in off] == [("spec.nodeSelector", HOST_POLICY)]
    assert "hostFirewall.enabled=false" in HOST_POLICY
    assert unenforced_fields(HOST_W1, host_firewall=True) == []


def test_tunnel_routing_keeps_the_vxlan_port_open_between_nodes() -> None:
    r = repo(HOST_W1)
    plain = resolve_host(r.rules(), r.cache, W1, entities=ENTITIES)
    tunnel = resolve_host(r.rules(), r.cache, W1, entities=ENTITIES, node_ports=[(8472, "UDP")])
    assert PolicyEntry(REMOTE_NODE, "ingress", UDP, 8472, 16) in tunnel.entries
    assert PolicyEntry(REMOTE_NODE, "ingress", UDP, 8472, 16) not in plain.entries
    assert PolicyEntry(2, "ingress", UDP, 8472, 16) not in tunnel.entries  # only between nodes
