"""Egress gateway on a real lab (real kernel, real etcd): k8s-w2 carries a second underlay address,
192.168.10.240, as the egress IP. With a CiliumEgressGatewayPolicy selecting the mediabot pod on
k8s-w1 (and its twin on the gateway node), the world's ipinfo.io sees 192.168.10.240 for them and
k8s-w1's own IP for the other pod;
``bpf egress list`` shows the row; deleting the policy restores the normal path; a policy whose
gateway nodeSelector matches no node drops the traffic with 194 (NO_EGRESS_GATEWAY) in the flows;
a policy naming both egressIP and interface is refused and nothing is stored. Native and tunnel
routing alike."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from membrane.lab.world import WORLD_NAMES
from tests.lab.harness import Lab, unique_lab

LAB = """
nodes:
  - {name: k8s-ctr, ip: 192.168.10.100/24}
  - {name: k8s-w1, ip: 192.168.10.101/24}
  - {name: k8s-w2, ip: 192.168.10.102/24, extraIPs: [192.168.10.240/24]}
"""
EGRESS_IP, W1_IP = "192.168.10.240", "192.168.10.101"
IPINFO = WORLD_NAMES["ipinfo.io"]
PODS = """
apiVersion: v1
kind: Pod
metadata: {name: net-pod, labels: {org: empire, class: mediabot}}
spec:
  nodeName: k8s-w1
  containers: [{name: c, image: nicolaka/netshoot, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: gw-pod, labels: {org: empire, class: mediabot}}
spec:
  nodeName: k8s-w2
  containers: [{name: c, image: nicolaka/netshoot, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: plain-pod, labels: {org: alliance}}
spec:
  nodeName: k8s-w1
  containers: [{name: c, image: nicolaka/netshoot, command: [sleep, infinity]}]
"""
POLICY = """
apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata: {name: egress-sample}
spec:
  selectors:
  - podSelector:
      matchLabels: {org: empire, class: mediabot, io.kubernetes.pod.namespace: default}
  destinationCIDRs: ["0.0.0.0/0"]
  egressGateway:
    nodeSelector: {matchLabels: {kubernetes.io/hostname: %s}}
    egressIP: %s
"""


@pytest.fixture(scope="module", params=["native", "tunnel"])
def lab(lab_requirements: None, tmp_path_factory: pytest.TempPathFactory,
        request: pytest.FixtureRequest) -> Iterator[tuple[Lab, dict]]:
    """The same lab in both routing modes: the packet reaches the gateway through the VXLAN device
    either way; the reply returns natively or through the tunnel."""
    cfg = tmp_path_factory.mktemp("lab") / "lab.yaml"
    cfg.write_text(LAB)
    lab = Lab(unique_lab())
    try:
        lab.create("--config", str(cfg), "--set", "egressGateway.enabled=true", "--set", f"routingMode={request.param}")
        lab.apply(PODS)
        yield lab, lab.wait_pods_ready(["net-pod", "gw-pod", "plain-pod"], timeout=90)
    finally:
        lab.delete()
        left = lab.leftovers()
        assert not left, f"lab delete left things behind: {left}"


def _caller(lab: Lab, pod: str) -> str:
    """The source address ipinfo.io saw ("" when the request did not get through)."""
    return lab.exec(pod, "curl", "-s", "--max-time", "3", f"http://{IPINFO}/ip", check=False).stdout.strip()


def _egress_rows(lab: Lab, node: str) -> list[list[str]]:
    lines = lab.run("bpf", "egress", "list", "--node", node).stdout.splitlines()
    assert lines[0].split() == ["Source", "IP", "Destination", "CIDR", "Egress", "IP", "Gateway", "IP"], lines
    return [line.split(None, 3) for line in lines[1:]]


def _flows(lab: Lab, *args: str) -> list[dict[str, Any]]:
    out = lab.run("observe", "--last", "2000", "-o", "json", *args, timeout=30).stdout
    return [json.loads(line)["flow"] for line in out.splitlines() if line.strip()]


def test_selected_pod_leaves_with_the_egress_ip_and_others_with_their_node_ip(lab: tuple[Lab, dict]) -> None:
    lab_, pods = lab
    assert _caller(lab_, "net-pod") == W1_IP  # no policy yet: masqueraded to its node
    lab_.apply(POLICY % ("k8s-w2", EGRESS_IP))
    pod_ip = pods["net-pod"]["status"]["podIP"]
    want = [pod_ip, "0.0.0.0/0", EGRESS_IP, "192.168.10.102"]
    lab_.wait_for(lambda: want in _egress_rows(lab_, "k8s-w1"), timeout=20, what="egress row on k8s-w1")
    lab_.wait_for(lambda: want in _egress_rows(lab_, "k8s-w2"), timeout=20, what="egress row on k8s-w2")
    lab_.wait_for(lambda: _caller(lab_, "net-pod") == EGRESS_IP, timeout=15, what="ipinfo.io to see the egress IP")
    for _ in range(3):
        assert _caller(lab_, "net-pod") == EGRESS_IP
        assert _caller(lab_, "plain-pod") == W1_IP
        assert _caller(lab_, "gw-pod") == EGRESS_IP  # a selected pod on the gateway node itself
    # in-cluster destinations inside 0.0.0.0/0 keep the normal path
    rows = _egress_rows(lab_, "k8s-w1")
    assert [pod_ip, "192.168.10.102/32", "0.0.0.0", "Excluded CIDR"] in rows, rows


def test_pods_leave_room_for_the_vxlan_hop_and_status_shows_the_gateway(lab: tuple[Lab, dict]) -> None:
    """In native routing too: a full-size packet to the gateway must fit VXLAN on the 1500-byte underlay."""
    lab_, _ = lab
    assert lab_.exec("net-pod", "cat", "/sys/class/net/eth0/mtu").stdout.strip() == "1450"
    assert lab_.exec("plain-pod", "cat", "/sys/class/net/eth0/mtu").stdout.strip() == "1450"  # as Cilium: every pod
    status = lab_.run("status", "--node", "k8s-w1").stdout
    assert re.search(r"Egress Gateway:\s+Enabled\s+\[1 policy, \d+ entries in mb_egress_v4\]", status), status


def test_deleting_the_policy_restores_the_normal_path(lab: tuple[Lab, dict]) -> None:
    lab_, _ = lab
    lab_.run("delete", "ciliumegressgatewaypolicy", "egress-sample")
    lab_.wait_for(lambda: _egress_rows(lab_, "k8s-w1") == [], timeout=20, what="egress rows gone")
    assert _caller(lab_, "net-pod") == W1_IP


def test_no_gateway_node_drops_with_194(lab: tuple[Lab, dict]) -> None:
    lab_, pods = lab
    lab_.apply(POLICY % ("no-such-node", EGRESS_IP))
    pod_ip = pods["net-pod"]["status"]["podIP"]
    lab_.wait_for(lambda: [pod_ip, "0.0.0.0/0", "0.0.0.0", "Not Found"] in _egress_rows(lab_, "k8s-w1"),
                  timeout=20, what="a row without gateway")
    assert _caller(lab_, "net-pod") == ""
    assert _caller(lab_, "plain-pod") == W1_IP

    def dropped() -> list[dict[str, Any]]:
        return [f for f in _flows(lab_, "--verdict", "DROPPED", "--from-pod", "default/net-pod")
                if f.get("drop_reason_desc") == "NO_EGRESS_GATEWAY"]

    found = lab_.wait_for(dropped, timeout=15, what="a NO_EGRESS_GATEWAY drop in the flows")
    assert found[0]["IP"]["destination"] == IPINFO
    lab_.run("delete", "ciliumegressgatewaypolicy", "egress-sample")
    lab_.wait_for(lambda: _caller(lab_, "net-pod") == W1_IP, timeout=20, what="the normal path back")


def test_egress_ip_with_interface_is_refused_and_nothing_is_stored(lab: tuple[Lab, dict]) -> None:
    lab_, _ = lab
    bad = (POLICY % ("k8s-w2", EGRESS_IP)).replace("egress-sample", "both") + "    interface: eth1\n"
    proc = lab_.run("apply", "-f", "-", input=bad, check=False)
    assert proc.returncode != 0, proc
    assert "spec.egressGateway: Forbidden: egressIP and interface are mutually exclusive" in proc.stderr, proc.stderr
    got = lab_.run("get", "ciliumegressgatewaypolicies", "-o", "json", check=False)
    assert "\"both\"" not in got.stdout


def test_an_egress_ip_the_gateway_does_not_have_drops_with_204(lab: tuple[Lab, dict]) -> None:
    lab_, pods = lab
    lab_.apply(POLICY % ("k8s-w2", "192.168.10.249"))
    pod_ip = pods["net-pod"]["status"]["podIP"]
    # k8s-w2 resolves its own rows: the address is on none of its devices
    lab_.wait_for(lambda: [pod_ip, "0.0.0.0/0", "0.0.0.0", "192.168.10.102"] in _egress_rows(lab_, "k8s-w2"),
                  timeout=20, what="a row without egress IP on the gateway")
    assert _caller(lab_, "net-pod") == ""

    def dropped() -> list[dict[str, Any]]:
        return [f for f in _flows(lab_, "--verdict", "DROPPED", "--node", "k8s-w2")
                if f.get("drop_reason_desc") == "DROP_NO_EGRESS_IP" and f["IP"]["source"] == pod_ip]

    lab_.wait_for(dropped, timeout=15, what="a DROP_NO_EGRESS_IP drop in k8s-w2's flows")
    lab_.run("delete", "ciliumegressgatewaypolicy", "egress-sample")
    lab_.wait_for(lambda: _caller(lab_, "net-pod") == W1_IP, timeout=20, what="the normal path back")


SEED_ALL = Path("/work/shared/seed-data/manifests/egress-gateway-all.yaml")


@pytest.mark.skipif(not SEED_ALL.is_file(), reason="seed manifests not present")
def test_the_seed_policy_applies_unchanged(lab: tuple[Lab, dict]) -> None:
    """egress-gateway-all.yaml names no egressIP: k8s-w2's default-route device (here its underlay
    device, the lab has no default route) gives its first address, the node IP."""
    lab_, _ = lab
    lab_.run("apply", "-f", str(SEED_ALL))
    try:
        lab_.wait_for(lambda: _caller(lab_, "net-pod") == "192.168.10.102", timeout=20,
                      what="ipinfo.io to see k8s-w2's address")
        assert _caller(lab_, "plain-pod") == W1_IP
    finally:
        lab_.run("delete", "ciliumegressgatewaypolicy", "egress-sample")
    lab_.wait_for(lambda: _caller(lab_, "net-pod") == W1_IP, timeout=20, what="the normal path back")
