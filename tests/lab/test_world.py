"""The lab's outside world: a 2-node lab plus ``<lab>.world``; pods resolve world names and reach its
servers with their own IPs (no NAT yet), and the cluster DNS workload forwards to the world resolver."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator

import pytest

from membrane.lab.record import load_record
from membrane.lab.topology import LabTopology
from membrane.lab.world import WORLD_DNS_IP, WORLD_NAMES, create_world, delete_world, plan_world
from membrane.model.naming import NETNS_DIR
from tests.lab.harness import Lab, unique_lab

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: client-ctr}
spec:
  nodeName: k8s-ctr
  containers: [{name: c, image: nicolaka/netshoot, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client-w1}
spec:
  nodeName: k8s-w1
  containers: [{name: c, image: nicolaka/netshoot, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: cluster-dns}
spec:
  nodeName: k8s-w1
  containers:
    - name: coredns
      image: registry.k8s.io/coredns/coredns:v1.12.0
      args: [-conf, /etc/coredns/Corefile]
      env: [{name: MEMBRANE_LAB, value: "%(lab)s"}]
"""
CLIENTS = ["client-ctr", "client-w1"]


@pytest.fixture(scope="module")
def world(lab_requirements: None) -> Iterator[tuple[Lab, LabTopology]]:
    if not shutil.which("dig"):
        pytest.skip("dig not installed (Debian package dnsutils)")
    lab = Lab(unique_lab())
    try:
        lab.create("--nodes", "2")
        record = load_record(lab.name)
        assert record is not None
        topo = record.topology
        if not os.path.exists(f"{NETNS_DIR}/{plan_world(lab.name, topo).netns}"):  # the builder may do it
            create_world(lab.name, topo)
        lab.apply(PODS % {"lab": lab.name})
        lab.wait_pods_ready([*CLIENTS, "cluster-dns"])
        yield lab, topo
        delete_world(lab.name, topo)
        assert not os.path.exists(f"{NETNS_DIR}/{plan_world(lab.name, topo).netns}")
    finally:
        lab.delete()
        left = lab.leftovers()
        assert not left, f"lab delete left things behind: {left}"


def _dig(lab: Lab, pod: str, server: str, name: str, *opts: str) -> str:
    return lab.exec(pod, "dig", f"@{server}", name, "+time=2", "+tries=2", *opts).stdout


def test_world_namespace_through_lab_exec(world: tuple[Lab, LabTopology]) -> None:
    lab, topo = world
    out = lab.run("lab", "exec", "world", "--", "ip", "-o", "-4", "addr").stdout
    assert plan_world(lab.name, topo).address in out
    assert WORLD_NAMES["ipinfo.io"] in out


@pytest.mark.parametrize("pod", CLIENTS)
def test_pod_resolves_world_names_directly(world: tuple[Lab, LabTopology], pod: str) -> None:
    lab, _topo = world
    assert _dig(lab, pod, WORLD_DNS_IP, "one.one.one.one", "+short").split() == [WORLD_NAMES["one.one.one.one"]]
    assert "status: NXDOMAIN" in _dig(lab, pod, WORLD_DNS_IP, "no-such-name.example")


@pytest.mark.parametrize("pod", CLIENTS)
def test_pod_reaches_world_masqueraded_to_its_node_ip(world: tuple[Lab, LabTopology], pod: str) -> None:
    lab, topo = world
    node = lab.pod(pod)["spec"]["nodeName"]
    node_ip = next(n.address for n in topo.nodes if n.name == node)
    ipinfo = WORLD_NAMES["ipinfo.io"]
    out = lab.exec(pod, "curl", "-s", "--max-time", "5", f"http://{ipinfo}/").stdout
    assert json.loads(out)["ip"] == node_ip  # BPF masquerade: leaving the native-routing CIDR
    assert lab.exec(pod, "curl", "-s", "--max-time", "5", f"http://{ipinfo}/ip").stdout.strip() == node_ip


def test_cluster_dns_pod_forwards_and_answers_cluster_names(world: tuple[Lab, LabTopology]) -> None:
    lab, _topo = world
    dns_ip = lab.pod("cluster-dns")["status"]["podIP"]
    client_ip = lab.pod("client-ctr")["status"]["podIP"]
    forwarded = _dig(lab, "client-ctr", dns_ip, "ipinfo.io", "+short").split()
    assert forwarded == [WORLD_NAMES["ipinfo.io"]]
    pod_name = client_ip.replace(".", "-") + ".default.pod.cluster.local"
    assert _dig(lab, "client-ctr", dns_ip, pod_name, "+short").split() == [client_ip]
    assert "status: NXDOMAIN" in _dig(lab, "client-ctr", dns_ip, "nope.default.svc.cluster.local")
    assert _dig(lab, "client-ctr", dns_ip, "one.one.one.one", "+tcp", "+short").split() == [
        WORLD_NAMES["one.one.one.one"]]
