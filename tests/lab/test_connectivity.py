"""End-to-end: pods on a 3-node lab reach each other through the eBPF datapath, without NAT."""

from __future__ import annotations

import json

import pytest

from tests.lab.harness import Lab

MANIFEST = """
apiVersion: v1
kind: Pod
metadata: {name: web-w1, labels: {app: web}}
spec:
  nodeName: k8s-w1
  containers:
    - {name: web, image: traefik/whoami, ports: [{containerPort: 80, name: http}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client-ctr, labels: {app: client}}
spec:
  nodeName: k8s-ctr
  containers:
    - {name: c, image: nicolaka/netshoot}
---
apiVersion: v1
kind: Pod
metadata: {name: client-w1, labels: {app: client}}
spec:
  nodeName: k8s-w1
  containers:
    - {name: c, image: busybox}
"""


@pytest.fixture(scope="module")
def pods(lab: Lab) -> dict:
    lab.apply(MANIFEST)
    return lab.wait_pods_ready(["web-w1", "client-ctr", "client-w1"])


def _whoami(lab: Lab, client: str, ip: str) -> dict[str, str]:
    out = lab.exec(client, "curl", "-s", "--max-time", "5", f"http://{ip}/").stdout
    fields = {}
    for line in out.splitlines():
        if ": " in line:
            k, v = line.split(": ", 1)
            fields.setdefault(k, v)
    assert "Hostname" in fields, out
    return fields


def test_cross_node_pod_to_pod_keeps_client_ip(lab: Lab, pods: dict) -> None:
    server_ip = pods["web-w1"]["status"]["podIP"]
    client_ip = pods["client-ctr"]["status"]["podIP"]
    assert pods["web-w1"]["spec"]["nodeName"] != pods["client-ctr"]["spec"]["nodeName"]
    reply = _whoami(lab, "client-ctr", server_ip)
    assert reply["Hostname"] == "web-w1"
    assert reply["RemoteAddr"].rsplit(":", 1)[0] == client_ip


def _forwarded_by_kernel(lab: Lab, node: str) -> int:
    """IP ForwDatagrams of the node's stack: packets the kernel routed between interfaces."""
    lines = [line.split() for line in lab.node_exec(node, "cat", "/proc/net/snmp").stdout.splitlines()
             if line.startswith("Ip:")]
    return int(lines[1][lines[0].index("ForwDatagrams")])


def test_pod_to_pod_bypasses_the_kernel_stack(lab: Lab, pods: dict) -> None:
    server_ip = pods["web-w1"]["status"]["podIP"]
    client_ip = pods["client-w1"]["status"]["podIP"]
    before = _forwarded_by_kernel(lab, "k8s-w1")
    for _ in range(3):
        reply = _whoami(lab, "client-w1", server_ip)
        assert reply["RemoteAddr"].rsplit(":", 1)[0] == client_ip
    # from-container redirected every packet to the peer: the kernel forwarded none of them.
    assert _forwarded_by_kernel(lab, "k8s-w1") - before < 5
    # Across nodes too, with eBPF host routing (the default): from-netdev hands the packets to the
    # pod, from-container sends the replies out of eth1 by the FIB (bpf.hostLegacyRouting=true would
    # leave both to the node's stack; tests/datapath/test_host_connectivity.py runs both modes).
    status = lab.agent_status("k8s-w1")
    assert status["routing"]["intra-host-routing-mode"] == "BPF"
    before = _forwarded_by_kernel(lab, "k8s-w1")
    for _ in range(3):
        _whoami(lab, "client-ctr", server_ip)
    assert _forwarded_by_kernel(lab, "k8s-w1") - before < 5


def test_pod_to_node_and_node_to_pod(lab: Lab, pods: dict) -> None:
    nodes = {n["metadata"]["name"]: n for n in lab.get_json("nodes")}
    w2_ip = next(a["address"] for a in nodes["k8s-w2"]["status"]["addresses"] if a["type"] == "InternalIP")
    ctr_ip = next(a["address"] for a in nodes["k8s-ctr"]["status"]["addresses"] if a["type"] == "InternalIP")
    lab.exec("client-ctr", "ping", "-c", "2", "-W", "2", w2_ip)  # pod -> remote node
    lab.exec("client-ctr", "ping", "-c", "2", "-W", "2", ctr_ip)  # pod -> own node
    lab.node_exec("k8s-w2", "ping", "-c", "2", "-W", "2", pods["web-w1"]["status"]["podIP"])  # node -> remote pod
    lab.node_exec("k8s-w1", "curl", "-s", "--max-time", "5", f"http://{pods['web-w1']['status']['podIP']}/")


def test_get_nodes_wide_shows_ip_and_pod_cidr(lab: Lab, pods: dict) -> None:
    out = lab.run("get", "nodes", "-o", "wide").stdout
    assert "192.168.10.100" in out and "POD-CIDR" in out
    nodes = lab.get_json("nodes")
    cidrs = [n["spec"]["podCIDR"] for n in nodes]
    assert len(set(cidrs)) == 3 and all(c.startswith("10.") for c in cidrs)


def test_status_and_endpoint_list(lab: Lab, pods: dict) -> None:
    status = lab.agent_status("k8s-w1")
    assert status["ready"] and status["kvstore"]["state"] == "Ok"
    assert status["ipam"]["ipv4"]["allocated"] == 3 and status["ipam"]["ipv4"]["capacity"] == 254  # router + 2 pods
    assert status["ipam"]["allocations"][pods["web-w1"]["status"]["podIP"]] == "default/web-w1"
    out = lab.run("endpoint", "list", "--node", "k8s-w1").stdout
    assert pods["web-w1"]["status"]["podIP"] in out and "k8s:app=web" in out
    text = lab.run("status", "--node", "k8s-w1", "--verbose").stdout
    assert "IPv4: 3/254 allocated from 10." in text and "Controller Status" in text


def test_label_pod_updates_endpoint_labels(lab: Lab, pods: dict) -> None:
    lab.run("label", "pod", "client-w1", "tier=frontend")
    def labelled() -> bool:
        eps = json.loads(lab.run("endpoint", "list", "--node", "k8s-w1", "-o", "json").stdout)
        return any(e["pod_name"] == "client-w1" and e["labels"].get("tier") == "frontend" for e in eps)
    lab.wait_for(labelled, 40, "endpoint labels to follow the pod")
    assert lab.run("label", "pod", "client-w1", "tier=backend", check=False).returncode != 0  # needs --overwrite
    lab.run("label", "pod", "client-w1", "tier-")


def _endpoint(lab: Lab, node: str, pod: str) -> dict:
    eps = json.loads(lab.run("endpoint", "list", "--node", node, "-o", "json").stdout)
    return next(e for e in eps if e["pod_name"] == pod)


def test_identities_are_shared_cluster_wide_and_follow_relabelling(lab: Lab, pods: dict) -> None:
    def ident(node: str, pod: str) -> int:
        return _endpoint(lab, node, pod)["status"].get("identity", {}).get("id", 0)

    lab.wait_for(lambda: ident("k8s-ctr", "client-ctr") and ident("k8s-w1", "client-w1"), 20, "identities")
    shared = ident("k8s-ctr", "client-ctr")
    assert shared >= 256 and ident("k8s-w1", "client-w1") == shared  # same labels, two nodes, one identity
    assert ident("k8s-w1", "web-w1") not in (0, shared)
    listing = lab.run("identity", "list").stdout
    assert "reserved:host" in listing and "k8s:app=client" in listing
    labels = _endpoint(lab, "k8s-w1", "client-w1")["status"]["labels"]["security-relevant"]
    assert "k8s:io.kubernetes.pod.namespace=default" in labels
    lab.run("label", "pod", "client-w1", "role=probe")
    lab.wait_for(lambda: ident("k8s-w1", "client-w1") not in (0, shared), 20, "a new identity after relabelling")
    lab.run("label", "pod", "client-w1", "role-")
    lab.wait_for(lambda: ident("k8s-w1", "client-w1") == shared, 20, "the shared identity back")


def test_bpf_ipcache_holds_every_pod_and_node_of_the_cluster(lab: Lab, pods: dict) -> None:
    def table() -> dict[str, str]:
        rows = json.loads(lab.run("bpf", "ipcache", "list", "--node", "k8s-w2", "-o", "json").stdout)
        return {r["prefix"]: r["value"] for r in rows}

    client = pods["client-ctr"]["status"]["podIP"]
    ident = _endpoint(lab, "k8s-ctr", "client-ctr")["status"]["identity"]["id"]
    got = lab.wait_for(lambda: (t := table()) and f"{client}/32" in t and t, 20, "the client pod in k8s-w2's ipcache")
    assert f"identity={ident} " in got[f"{client}/32"]  # a pod on another node, learned through etcd
    assert "identity=1 " in got["192.168.10.102/32"]  # own node: host
    assert "identity=6 " in got["192.168.10.100/32"]  # other nodes: remote-node
    assert "identity=2 " in got["0.0.0.0/0"]  # world
    assert "IP PREFIX/ADDRESS" in lab.run("bpf", "ipcache", "list", "--node", "k8s-w2").stdout
