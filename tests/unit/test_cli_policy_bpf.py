"""`membrane bpf policy get | ct list` and `membrane get cep|ciliumid` from fixed agent rows (no lab)."""

from __future__ import annotations

import json

import pytest

from membrane.cli import bpf_cmds, cilium_kinds, target
from membrane.cli.bpf_cmds import (
    EMPTY_POLICY,
    key_prefix,
    port_proto,
    render_ct,
    render_policy_entries,
    render_policy_sections,
)
from membrane.cli.cilium_kinds import cilium_endpoint, cilium_identity, render_endpoints, render_identities
from membrane.cli.main import main
from membrane.identity.labels import LabelSet

LABELS = {
    0: ["reserved:unknown"],
    1: ["reserved:host"],
    300: ["k8s:app=client", "k8s:io.kubernetes.pod.namespace=x"],
}


def labels_of(identity: int) -> list[str]:
    return LABELS.get(identity, [])


def row(ep: int, direction: str, identity: int, protocol: int = 0, port: int = 0, prefix: int = 0,
        verdict: str = "allow", packets: int = 0, nbytes: int = 0) -> dict:
    return {"endpoint": ep, "direction": direction, "identity": identity, "protocol": protocol, "port": port,
            "port_prefix": prefix, "verdict": verdict, "packets": packets, "bytes": nbytes}


ROWS = [
    row(7, "egress", 0),
    row(7, "ingress", 300, 6, 80, 16, packets=10, nbytes=1234),
    row(7, "ingress", 1),
    row(7, "ingress", 4242, 17, 53, 16, verdict="deny"),
    row(8, "ingress", 1),
]


def test_port_proto_and_prefix_like_cilium():
    assert port_proto(0, 0, 0) == "ANY"
    assert port_proto(6, 0, 0) == "TCP"
    assert port_proto(6, 80, 16) == "80/TCP"
    assert port_proto(17, 8080, 14) == "8080-8083/UDP"
    assert port_proto(132, 9, 16) == "9/SCTP"
    assert port_proto(99, 1, 16) == "1/99"
    assert (key_prefix(0, 0), key_prefix(6, 0), key_prefix(6, 16), key_prefix(6, 14)) == (40, 48, 64, 62)


def test_policy_table_one_line_per_label():
    text = render_policy_entries([r for r in ROWS if r["endpoint"] == 7], labels_of)
    assert text.splitlines() == [
        "POLICY   DIRECTION   LABELS (source:key[=value])         PORT/PROTO   PROXY PORT   AUTH TYPE   BYTES   PACKETS   PREFIX",
        "Allow    Ingress     reserved:host                       ANY          NONE         disabled    0       0         40",
        "Allow    Ingress     k8s:app=client                      80/TCP       NONE         disabled    1234    10        64",
        "                     k8s:io.kubernetes.pod.namespace=x",
        "Deny     Ingress     4242                                53/UDP       NONE         disabled    0       0         64",
        "Allow    Egress      reserved:unknown                    ANY          NONE         disabled    0       0         40",
    ]


def test_empty_policy_and_sections():
    assert render_policy_entries([], labels_of) == EMPTY_POLICY
    ep = {"id": 8, "namespace": "x", "pod_name": "web", "status": {"identity": {"id": 301}}}
    text = render_policy_sections([("k8s-w1", ep, []), ("k8s-w2", {"id": 9}, [])], labels_of)
    assert text == (f"Endpoint 8, node k8s-w1, x/web, identity 301:\n{EMPTY_POLICY}\n\n"
                    f"Endpoint 9, node k8s-w2:\n{EMPTY_POLICY}")


def test_ct_lines():
    assert render_ct([{"text": "TCP OUT a -> b"}, {"text": "TCP IN b -> a"}]) == "TCP OUT a -> b\nTCP IN b -> a"
    assert render_ct([]) == ""


# ---- the bpf policy command over fake agents -----------------------------------------------------------
AGENTS = {
    "n1": {"/v1/endpoints": [{"id": 7, "namespace": "x", "pod_name": "client"}, {"id": 8, "pod_name": "a"}],
           "/v1/bpf/policy": ROWS},
    "n2": {"/v1/endpoints": [{"id": 8, "namespace": "y", "pod_name": "b"}], "/v1/bpf/policy": []},
}


@pytest.fixture
def fake_agents(monkeypatch):
    def nodes(lab, only):
        return [only] if only else sorted(AGENTS)

    monkeypatch.setattr(bpf_cmds, "pick_nodes", nodes)
    monkeypatch.setattr(bpf_cmds, "ask_agent", lambda lab, node, path: AGENTS[node][path])
    monkeypatch.setattr(bpf_cmds, "identity_labels_lookup", lambda lab: labels_of)


def test_bpf_policy_get_endpoint(fake_agents, capsys):
    assert main(["bpf", "policy", "get", "7", "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 and {r["node"] for r in rows} == {"n1"}
    assert main(["bpf", "policy", "get", "7"]) == 0
    assert capsys.readouterr().out.startswith("POLICY   DIRECTION")


def test_bpf_policy_get_ambiguous_and_missing_endpoints(fake_agents, capsys):
    assert main(["bpf", "policy", "get", "8"]) == 1
    assert "endpoint 8 exists on nodes n1, n2: pass --node" in capsys.readouterr().err
    assert main(["bpf", "policy", "get", "8", "--node", "n2"]) == 0
    assert capsys.readouterr().out == EMPTY_POLICY + "\n"
    assert main(["bpf", "policy", "get", "99"]) == 1
    assert "endpoint 99 not found" in capsys.readouterr().err
    assert main(["bpf", "policy", "get"]) == 1
    assert "usage" in capsys.readouterr().err


def test_bpf_policy_get_all(fake_agents, capsys):
    assert main(["bpf", "policy", "get", "--all"]) == 0
    titles = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Endpoint")]
    assert titles == ["Endpoint 7, node n1, x/client:", "Endpoint 8, node n1, default/a:", "Endpoint 8, node n2, y/b:"]


# ---- CiliumEndpoints and CiliumIdentities --------------------------------------------------------------
AGENT_EP = {
    "id": 12, "namespace": "x", "pod_name": "web", "ipv4": "10.0.1.5", "labels": {"app": "web"},
    "status": {"identity": {"id": 300}, "state": "ready",
               "labels": {"security-relevant": ["k8s:app=web"]},
               "networking": {"addressing": [{"ipv4": "10.0.1.5"}]},
               "policy": {"realized": {"policy-enabled": "ingress"}}},
}


def test_cilium_endpoint_object_and_table():
    cep = cilium_endpoint(AGENT_EP, "k8s-w1")
    assert cep["metadata"] == {"name": "web", "namespace": "x", "labels": {"app": "web"}}
    assert cep["status"]["identity"] == {"id": 300, "labels": ["k8s:app=web"]}
    assert cep["status"]["networking"] == {"addressing": [{"ipv4": "10.0.1.5"}], "node": "k8s-w1"}
    assert cep["status"]["policy"]["ingress"] == {"enforcing": True, "state": "enforcing"}
    assert cep["status"]["policy"]["egress"] == {"enforcing": False, "state": "non-enforcing"}
    bare = cilium_endpoint({"id": 1, "pod_name": "p", "status": {"networking": {"addressing": [{"ipv4": "10.0.0.9"}]}}},
                           "n")
    assert bare["status"]["networking"]["addressing"] == [{"ipv4": "10.0.0.9"}] and bare["status"]["policy"] == {}
    assert render_endpoints([cep]).splitlines() == [
        "NAME   SECURITY IDENTITY   ENDPOINT STATE   IPV4       IPV6",
        "web    300                 ready            10.0.1.5   ",
    ]
    wide = render_endpoints([cep, bare], wide=True, all_namespaces=True).splitlines()
    assert wide[0].split("   ")[:4] == ["NAMESPACE", "NAME", "SECURITY IDENTITY", "INGRESS ENFORCEMENT"]
    assert "enforcing" in wide[1] and "<status disabled>" in wide[2]


def test_cilium_identity_object_and_table():
    obj = cilium_identity(300, LabelSet(["k8s:app=web", "k8s:io.kubernetes.pod.namespace=x"]))
    assert obj["metadata"] == {"name": "300", "labels": {"app": "web", "io.kubernetes.pod.namespace": "x"}}
    assert obj["security-labels"] == {"k8s:app": "web", "k8s:io.kubernetes.pod.namespace": "x"}
    assert render_identities([obj]).splitlines() == ["NAME   NAMESPACE   AGE", "300    x           <unknown>"]


def test_get_routes_synthesised_kinds(monkeypatch, capsys):
    ceps = [cilium_endpoint(AGENT_EP, "n1"), cilium_endpoint(dict(AGENT_EP, namespace="default", pod_name="d"), "n2")]
    monkeypatch.setattr(cilium_kinds, "_endpoints", lambda lab: ceps)
    monkeypatch.setattr(target, "cluster_store", lambda lab: pytest.fail("cep must not read stored kinds"))
    assert main(["get", "cep"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["NAME", "d"]
    assert main(["get", "ciliumendpoints", "-A", "-l", "app=web"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert main(["get", "cep", "web", "-n", "x", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "CiliumEndpoint"
    assert main(["get", "cep", "nope"]) == 1
    assert capsys.readouterr().err == 'Error from server (NotFound): ciliumendpoints.cilium.io "nope" not found\n'
    assert main(["get", "pods,cep"]) == 1
    assert "cannot be listed together" in capsys.readouterr().err
