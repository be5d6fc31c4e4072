"""L3/L4 policy end to end: the x/y/z reachability matrix (Kubernetes netpol e2e style) on a 3-node lab.

Every case applies its policies with ``membrane apply``, compares the whole 9 x 9 x {80,81} x {TCP,UDP}
matrix with a model (re-probing for a few seconds while the policy lands), and removes them again with
``membrane delete``; a case starts only once the matrix is all-allowed again. A pod probing itself is
always allowed (loopback never reaches the datapath), as in the Kubernetes e2e model.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lab import matrix
from tests.lab.harness import Lab
from tests.lab.matrix import Pod

pytestmark = pytest.mark.root


class Policies:
    """Applies manifests (objects, as JSON) and deletes them all again at the end of the test."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.applied: list[str] = []
        self.labelled: list[tuple[Pod, str]] = []

    def apply(self, *objs: dict[str, Any]) -> None:
        text = "\n---\n".join(json.dumps(o) for o in objs) + "\n"
        self.lab.apply(text)
        self.applied.append(text)

    def delete(self, *objs: dict[str, Any]) -> None:
        self.lab.run("delete", "--ignore-not-found", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objs))

    def label(self, pod: Pod, key: str, value: str | None) -> None:
        """Set (or with None remove) a pod label, in the lab and in the model's Pod."""
        change = f"{key}-" if value is None else f"{key}={value}"
        self.lab.run("label", "-n", pod.namespace, "pod", pod.name, change, "--overwrite")
        if value is None:
            pod.labels.pop(key, None)
        else:
            pod.labels[key] = value
            self.labelled.append((pod, key))

    def cleanup(self) -> None:
        for text in reversed(self.applied):
            self.lab.run("delete", "--ignore-not-found", "-f", "-", input=text)
        for pod, key in self.labelled:
            if key in pod.labels:
                self.label(pod, key, None)


@pytest.fixture(scope="module")
def pods(lab: Lab) -> dict[str, Pod]:
    return matrix.create_pods(lab)


@pytest.fixture
def policies(lab: Lab, pods: dict[str, Pod]) -> Iterator[Policies]:
    pol = Policies(lab)
    try:
        yield pol
    finally:
        pol.cleanup()
    # The next case starts from a clean lab: nothing enforced any more.
    check(lab, pods, matrix.allow_all, what="after removing the case's policies")


def check(lab: Lab, pods: dict[str, Pod], model: matrix.Model, what: str = "") -> None:
    matrix.check(lab, pods, lambda s, d, port, proto: s.key == d.key or model(s, d, port, proto), what=what)


def netpol(name: str, ns: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def cnp(name: str, ns: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def drops(lab: Lab, nodes: set[str]) -> dict[str, dict[str, int]]:
    return {node: matrix.datapath_drops(lab, node) for node in sorted(nodes)}


def assert_drops_grew(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], key: str) -> None:
    grew = {node: after[node].get(key, 0) - before[node].get(key, 0) for node in before}
    assert all(n > 0 for n in grew.values()), f"datapath-metrics {key!r} per node did not grow: {grew}"


def enforcement(lab: Lab, pods: list[Pod]) -> dict[str, str]:
    """status.policy.realized.policy-enabled of each pod's endpoint, by pod key."""
    eps = json.loads(lab.run("endpoint", "list", "-o", "json").stdout or "[]")
    by_ip = {}
    for ep in eps:
        status = ep.get("status", {})
        for addr in status.get("networking", {}).get("addressing", []):
            by_ip[addr.get("ipv4")] = status.get("policy", {}).get("realized", {}).get("policy-enabled")
    return {p.key: by_ip.get(p.ip, "?") for p in pods}


def in_ns(pods: dict[str, Pod], ns: str) -> list[Pod]:
    return [p for p in pods.values() if p.namespace == ns]


# ---- cases -------------------------------------------------------------------------------------------
def test_no_policy_everything_is_reachable(lab: Lab, pods: dict[str, Pod]) -> None:
    check(lab, pods, matrix.allow_all)


def test_default_deny_ingress_in_x(lab: Lab, pods: dict[str, Pod], policies: Policies) -> None:
    nodes = {p.node for p in in_ns(pods, "x")}
    before = drops(lab, nodes)
    policies.apply(netpol("deny-ingress", "x", {"podSelector": {}, "policyTypes": ["Ingress"]}))
    check(lab, pods, lambda s, d, port, proto: d.namespace != "x")
    assert set(enforcement(lab, in_ns(pods, "x")).values()) == {"ingress"}
    assert_drops_grew(before, drops(lab, nodes), "133/ingress")


def test_allow_from_namespace_y_to_x(lab: Lab, pods: dict[str, Pod], policies: Policies) -> None:
    policies.apply(netpol("allow-from-y", "x", {
        "podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}))
    check(lab, pods, lambda s, d, port, proto: d.namespace != "x" or s.namespace == "y")


def test_allow_from_pod_a_in_selected_namespaces(lab: Lab, pods: dict[str, Pod], policies: Policies) -> None:
    # Only x/b is selected; its peers are pods a of namespaces x and y (namespaceSelector AND podSelector).
    policies.apply(netpol("allow-from-a", "x", {
        "podSelector": {"matchLabels": {"pod": "b"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                                  {"key": "ns", "operator": "In", "values": ["x", "y"]}]},
                               "podSelector": {"matchLabels": {"pod": "a"}}}]}]}))
    check(lab, pods, lambda s, d, port, proto: d.key != "x/b" or s.key in ("x/a", "y/a"))


def test_egress_deny_in_y_except_to_z(lab: Lab, pods: dict[str, Pod], policies: Policies) -> None:
    nodes = {p.node for p in in_ns(pods, "y")}
    before = drops(lab, nodes)
    policies.apply(netpol("egress-to-z", "y", {
        "podSelector": {}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]}))
    check(lab, pods, lambda s, d, port, proto: s.namespace != "y" or d.namespace == "z")
    assert set(enforcement(lab, in_ns(pods, "y")).values()) == {"egress"}
    assert_drops_grew(before, drops(lab, nodes), "133/egress")


def test_ipblock_with_except_does_not_select_pods(lab: Lab, pods: dict[str, Pod], policies: Policies) -> None:
    # Cilium semantics (reference §3.4, §3.6): ipBlock is a CIDR rule, and CIDR rules never match cluster
    # endpoints, even when the block covers the pods' CIDRs. Only the namespace peer z lets pods in.
    excluded = pods["y/a"].ip
    blocks = []
    for cidr in sorted({str(ipaddress.ip_network(p.ip + "/24", strict=False)) for p in pods.values()}):
        block: dict[str, Any] = {"cidr": cidr}
        if ipaddress.ip_address(excluded) in ipaddress.ip_network(cidr):
            block["except"] = [excluded + "/32"]
        blocks.append({"ipBlock": block})
    policies.apply(netpol("ipblock", "x", {
        "podSelector": {},
        "ingress": [{"from": [*blocks, {"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]}))
    check(lab, pods, lambda s, d, port, proto: d.namespace != "x" or s.namespace == "z")


def test_port_80_tcp_only(lab: Lab, pods: dict[str, Pod], policies: Policies) -> None:
    policies.apply(netpol("port-80", "x", {
        "podSelector": {}, "ingress": [{"ports": [{"port": 80, "protocol": "TCP"}]}]}))
    check(lab, pods, lambda s, d, port, proto: d.namespace != "x" or (port, proto) == (80, "TCP"))


def test_port_range_80_81_udp(lab: Lab, pods: dict[str, Pod], policies: Policies) -> None:
    policies.apply(netpol("range", "x", {
        "podSelector": {}, "ingress": [{"ports": [{"port": 80, "endPort": 81, "protocol": "UDP"}]}]}))
    check(lab, pods, lambda s, d, port, proto: d.namespace != "x" or proto == "UDP")


def test_named_ports(lab: Lab, pods: dict[str, Pod], policies: Policies) -> None:
    policies.apply(netpol("named", "x", {
        "podSelector": {},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                     "ports": [{"port": "serve-81-tcp"}, {"port": "serve-80-udp", "protocol": "UDP"}]}]}))
    check(lab, pods, lambda s, d, port, proto: d.namespace != "x"
          or (s.namespace == "y" and (port, proto) in ((81, "TCP"), (80, "UDP"))))


def test_egress_one_named_port(lab: Lab, pods: dict[str, Pod], policies: Policies) -> None:
    # e2e "should allow egress access on one named port": the name resolves against each peer's ports.
    policies.apply(netpol("egress-named", "x", {
        "podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
        "egress": [{"ports": [{"port": "serve-80-tcp"}]}]}))
    check(lab, pods, lambda s, d, port, proto: s.key != "x/a" or (port, proto) == (80, "TCP"))


def test_egress_named_port_to_selected_peers(lab: Lab, pods: dict[str, Pod], policies: Policies) -> None:
    policies.apply(cnp("egress-named-y", "x", {
        "endpointSelector": {"matchLabels": {"pod": "b"}},
        "egress": [{"toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "y"}}],
                    "toPorts": [{"ports": [{"port": "serve-81-udp", "protocol": "UDP"}]}]}]}))
    check(lab, pods, lambda s, d, port, proto: s.key != "x/b" or (d.namespace == "y" and (port, proto) == (81, "UDP")))


def test_ingress_deny_beats_allow(lab: Lab, pods: dict[str, Pod], policies: Policies) -> None:
    nodes = {p.node for p in in_ns(pods, "x")}
    before = drops(lab, nodes)
    policies.apply(cnp("deny-y-81", "x", {
        "endpointSelector": {},
        "ingress": [{"fromEntities": ["cluster"]},
                    {"fromEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "y"}}]}],
        "ingressDeny": [{"fromEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "y"}}],
                         "toPorts": [{"ports": [{"port": "81", "protocol": "TCP"}]}]}]}))
    check(lab, pods, lambda s, d, port, proto: not (d.namespace == "x" and s.namespace == "y"
                                                    and (port, proto) == (81, "TCP")))
    assert_drops_grew(before, drops(lab, nodes), "181/ingress")


def test_entities_world_then_cluster(lab: Lab, pods: dict[str, Pod], policies: Policies) -> None:
    def entities(*names: str) -> dict[str, Any]:
        return cnp("entities", "x", {"endpointSelector": {}, "ingress": [{"fromEntities": list(names)}]})

    policies.apply(entities("world"))
    check(lab, pods, lambda s, d, port, proto: d.namespace != "x", what="fromEntities [world]")
    policies.apply(entities("cluster"))
    check(lab, pods, matrix.allow_all, what="fromEntities [cluster]")
    assert set(enforcement(lab, in_ns(pods, "x")).values()) == {"ingress"}


def test_relabelling_moves_pods_in_and_out_of_selectors(lab: Lab, pods: dict[str, Pod], policies: Policies) -> None:
    # Subjects: x pods labelled guarded=yes. Peers: pods labelled role=client in any namespace.
    policies.apply(netpol("clients", "x", {
        "podSelector": {"matchLabels": {"guarded": "yes"}},
        "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "client"}}}]}]}))

    def model(s: Pod, d: Pod, port: int, proto: str) -> bool:
        return d.labels.get("guarded") != "yes" or s.labels.get("role") == "client"

    policies.label(pods["x/c"], "guarded", "yes")
    check(lab, pods, model, what="x/c guarded")
    policies.label(pods["z/b"], "role", "client")
    check(lab, pods, model, what="z/b a client")
    policies.label(pods["x/c"], "guarded", None)
    policies.label(pods["x/a"], "guarded", "yes")
    check(lab, pods, model, what="x/a guarded instead of x/c")
    policies.label(pods["z/b"], "role", None)
    check(lab, pods, model, what="z/b no longer a client")


def test_policy_update_and_delete(lab: Lab, pods: dict[str, Pod], policies: Policies) -> None:
    deny = netpol("evolving", "z", {"podSelector": {}, "policyTypes": ["Ingress"]})
    policies.apply(deny)
    check(lab, pods, lambda s, d, port, proto: d.namespace != "z", what="deny all into z")
    policies.apply(netpol("evolving", "z", {
        "podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "x"}}}],
                                        "ports": [{"port": 81, "protocol": "UDP"}]}]}))
    check(lab, pods, lambda s, d, port, proto: d.namespace != "z" or (s.namespace == "x" and (port, proto) == (81, "UDP")),
          what="updated: x may reach z on 81/UDP")
    policies.delete(deny)
    check(lab, pods, matrix.allow_all, what="policy deleted")
