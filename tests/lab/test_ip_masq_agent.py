"""ip-masq-agent on a running lab: the seeds' upgrade line turns it on (Cilium's default list, so the
world's documentation ranges keep the pod's IP), a ``kube-system/ip-masq-agent`` ConfigMap narrows it
to one address on every node (ipinfo.io sees the pod, one.one.one.one the node), a bad ConfigMap is
refused and changes nothing, deleting it goes back to the Helm values."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from membrane.lab.record import load_record
from membrane.lab.world import WORLD_NAMES
from tests.helm_lines import helm_commands
from tests.lab.harness import Lab, unique_lab

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: masq-ctr}
spec:
  nodeName: k8s-ctr
  containers: [{name: c, image: nicolaka/netshoot, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: masq-w1}
spec:
  nodeName: k8s-w1
  containers: [{name: c, image: nicolaka/netshoot, command: [sleep, infinity]}]
"""
CLIENTS = ("masq-ctr", "masq-w1")
IPINFO, ONE = WORLD_NAMES["ipinfo.io"], WORLD_NAMES["one.one.one.one"]
CONFIGMAP = """
apiVersion: v1
kind: ConfigMap
metadata: {name: ip-masq-agent, namespace: kube-system}
data:
  config: |
    nonMasqueradeCIDRs:
    - %s
    masqLinkLocal: true
"""
DEFAULTS = sorted(["10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24",
            "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4"])


@pytest.fixture(scope="module")
def lab(lab_requirements: None) -> Iterator[tuple[Lab, dict[str, tuple[str, str]]]]:
    """A 2-node lab with a client pod on each node: pod -> (pod IP, node IP)."""
    lab = Lab(unique_lab())
    try:
        lab.create("--nodes", "2")
        record = load_record(lab.name)
        assert record is not None
        node_ips = {n.name: n.address for n in record.topology.nodes}
        lab.apply(PODS)
        pods = lab.wait_pods_ready(list(CLIENTS), timeout=90)
        yield lab, {p: (pods[p]["status"]["podIP"], node_ips[pods[p]["spec"]["nodeName"]]) for p in CLIENTS}
    finally:
        lab.delete()
        left = lab.leftovers()
        assert not left, f"lab delete left things behind: {left}"


def _caller(lab: Lab, pod: str, address: str) -> str:
    """The source address the world's server saw."""
    return lab.exec(pod, "curl", "-s", "--max-time", "5", f"http://{address}/ip").stdout.strip()


def _ipmasq(lab: Lab, node: str) -> list[str]:
    lines = lab.run("bpf", "ipmasq", "list", "--node", node).stdout.splitlines()
    assert lines[0].strip() == "IP PREFIX/ADDRESS", lines
    return [line.strip() for line in lines[1:]]


def test_the_seed_line_enables_it_with_ciliums_default_list(lab: tuple[Lab, dict[str, tuple[str, str]]]) -> None:
    lab_, ips = lab
    for pod, (_pod_ip, node_ip) in ips.items():
        assert _caller(lab_, pod, IPINFO) == node_ip  # off: the world is masqueraded
    assert _ipmasq(lab_, "k8s-ctr") == []
    upgraded = lab_.run(*helm_commands()[1], timeout=300)
    assert 'daemon set "cilium" successfully rolled out' in upgraded.stdout, upgraded.stdout
    for node in ("k8s-ctr", "k8s-w1"):
        assert sorted(_ipmasq(lab_, node)) == DEFAULTS
        status = lab_.run("status", "--node", node).stdout
        assert re.search(r"^Masquerading:\s+BPF \(ip-masq-agent\)\s+\[eth1\]\s+10\.0\.0\.0/8 \[IPv4: Enabled, "
                         r"IPv6: Disabled\]", status, re.M), status
    for pod, (pod_ip, _node_ip) in ips.items():
        # 203.0.113.0/24 is in Cilium's default list: the pod's own address reaches the world
        assert _caller(lab_, pod, IPINFO) == pod_ip
        assert _caller(lab_, pod, ONE) == pod_ip


def test_the_configmap_narrows_it_on_every_node(lab: tuple[Lab, dict[str, tuple[str, str]]]) -> None:
    lab_, ips = lab
    lab_.apply(CONFIGMAP % f"{IPINFO}/32")
    for node in ("k8s-ctr", "k8s-w1"):
        lab_.wait_for(lambda n=node: _ipmasq(lab_, n) == [f"{IPINFO}/32"], timeout=20, what=f"ipmasq on {node}")
    for pod, (pod_ip, node_ip) in ips.items():
        assert _caller(lab_, pod, IPINFO) == pod_ip  # non-masquerade CIDR: keeps its IP
        assert _caller(lab_, pod, ONE) == node_ip  # anything else leaving the cluster: the node IP


def test_a_bad_configmap_is_refused_and_changes_nothing(lab: tuple[Lab, dict[str, tuple[str, str]]]) -> None:
    lab_, _ = lab
    before = _ipmasq(lab_, "k8s-w1")
    proc = lab_.run("apply", "-f", "-", input=CONFIGMAP % "203.0.113.0/24\n    - 203.0.113.12/32", check=False)
    assert proc.returncode == 1, proc
    assert ('data.config.nonMasqueradeCIDRs[1]: Invalid value: "203.0.113.12/32": overlaps '
            "data.config.nonMasqueradeCIDRs[0] (203.0.113.0/24)") in proc.stderr, proc.stderr
    cm = lab_.get_json("configmap", "ip-masq-agent", "-n", "kube-system")[0]
    assert f"{IPINFO}/32" in cm["data"]["config"] and "203.0.113.0/24" not in cm["data"]["config"]
    assert _ipmasq(lab_, "k8s-w1") == before


def test_deleting_the_configmap_goes_back_to_the_helm_values(lab: tuple[Lab, dict[str, tuple[str, str]]]) -> None:
    lab_, ips = lab
    lab_.run("delete", "configmap", "ip-masq-agent", "-n", "kube-system")
    lab_.wait_for(lambda: sorted(_ipmasq(lab_, "k8s-w1")) == DEFAULTS, timeout=20, what="default list")
    assert _caller(lab_, "masq-w1", ONE) == ips["masq-w1"][0]
