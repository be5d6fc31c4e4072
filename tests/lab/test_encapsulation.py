"""Calico-style encapsulation on the two-subnet lab (k8s-ctr and k8s-w1 on 192.168.10.0/24, k8s-w0 on
192.168.20.0/24 behind a router that learns no pod routes), for both types:

* CrossSubnet: on k8s-ctr's underlay device, pod traffic to k8s-w1 is plain IP between the pod
  addresses, pod traffic to k8s-w0 is encapsulated (VXLAN: UDP 8472 between the node IPs; IPIP:
  IP protocol 4 between the node IPs, built in BPF) and the pod addresses never show outside it;
* pods get MTU 1450 (vxlan) or 1480 (ipip); the node itself reaches a pod on the other subnet;
* a Calico IPPool with ``Always`` makes the same-subnet pair encapsulated too (``get
  ippools.crd.projectcalico.org -o wide`` shows it), deleting it restores CrossSubnet;
* policy on the receiving node still drops with 133 through the encapsulation;
* switching the encapsulation on the running lab is refused; delete leaves nothing behind.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from membrane.lab.paths import LabPaths
from tests.lab.harness import Lab, unique_lab

SUBNETS = """
nodes:
  - {name: k8s-ctr, ip: 192.168.10.100/24, podCIDR: 10.244.0.0/24}
  - {name: k8s-w1, ip: 192.168.10.101/24, podCIDR: 10.244.1.0/24}
  - {name: k8s-w0, ip: 192.168.20.100/24, podCIDR: 10.244.2.0/24}
router: {name: router, ips: [192.168.10.200/24, 192.168.20.200/24]}
settings: {ipam.mode: kubernetes}
"""
CTR, W1, W0 = "192.168.10.100", "192.168.10.101", "192.168.20.100"
PODS = """
apiVersion: v1
kind: Pod
metadata: {name: enc-cli, labels: {app: enc-cli}}
spec:
  nodeName: k8s-ctr
  containers: [{name: c, image: curlimages/curl}]
"""
SERVER = """
---
apiVersion: v1
kind: Pod
metadata: {name: %s, labels: {app: %s}}
spec:
  nodeName: %s
  containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]
"""
ALWAYS_POOL = """
apiVersion: crd.projectcalico.org/v1
kind: IPPool
metadata: {name: default-ipv4-ippool}
spec: {cidr: 10.244.0.0/16, %sMode: Always, natOutgoing: true}
"""
ONLY_OTHERS = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: enc-far-only-others}
spec:
  endpointSelector: {matchLabels: {app: enc-far}}
  ingress: [{fromEndpoints: [{matchLabels: {app: nobody}}]}]
"""


@pytest.fixture(scope="module", params=["vxlan", "ipip"])
def lab(request: pytest.FixtureRequest, lab_requirements: None,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, dict, str]]:
    if not shutil.which("tcpdump"):
        pytest.skip("tcpdump not installed (Debian package tcpdump; make setup installs it)")
    kind = request.param
    cfg = tmp_path_factory.mktemp("lab") / "lab.yaml"
    cfg.write_text(SUBNETS)
    lab = Lab(unique_lab("enc"))
    try:
        lab.create("--config", str(cfg), "--set", "encapsulation.mode=CrossSubnet",
                   "--set", f"encapsulation.type={kind}")
        lab.apply(PODS + SERVER % ("enc-near", "enc-near", "k8s-w1") + SERVER % ("enc-far", "enc-far", "k8s-w0"))
        yield lab, lab.wait_pods_ready(["enc-cli", "enc-near", "enc-far"], timeout=120), kind
    finally:
        lab.delete()
        left = lab.leftovers()
        assert not left, f"lab delete left things behind: {left}"


def _code(lab: Lab, ip: str) -> str:
    return lab.exec("enc-cli", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2",
                    f"http://{ip}/", check=False).stdout.strip()


def _capture(lab: Lab, action: Callable[[], None]) -> list[str]:
    """tcpdump lines on k8s-ctr's underlay device while ``action`` runs (pod or tunnel traffic only)."""
    netns = LabPaths(lab.name).node_netns("k8s-ctr")
    dump = subprocess.Popen(["ip", "netns", "exec", netns, "tcpdump", "-i", "eth1", "-n", "-l", "-t", "-q",
                             "net 10.244.0.0/16 or udp port 8472 or ip proto 4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # tcpdump is listening
        action()
        time.sleep(0.5)
    finally:
        dump.terminate()
        out, _err = dump.communicate(timeout=10)
    return [line for line in out.splitlines() if line.startswith("IP ")]


def _encapsulated(line: str, kind: str, node_a: str, node_b: str) -> bool:
    """The outer header of a tcpdump -t -q line is ``kind`` between the two node IPs (VXLAN:
    ``IP a.port > b.8472: UDP …``; IPIP: ``IP outer > outer: IP inner …``)."""
    outer = re.match(r"IP (\d+\.\d+\.\d+\.\d+)(?:\.(\d+))? > (\d+\.\d+\.\d+\.\d+)(?:\.(\d+))?: (.*)", line)
    if outer is None or {outer.group(1), outer.group(3)} != {node_a, node_b}:
        return False
    if kind == "vxlan":
        return "8472" in (outer.group(2), outer.group(4)) and outer.group(5).startswith("UDP")
    return outer.group(5).startswith("IP ")


def _check_wire(lines: list[str], kind: str, peer: str, pod_ip: str, want_encap: bool) -> None:
    assert len(lines) >= 6, lines  # handshake, request, response, close
    for line in lines:
        if want_encap:
            assert _encapsulated(line, kind, CTR, peer), line
        else:
            assert not _encapsulated(line, kind, CTR, peer) and pod_ip in line, line
            assert "8472" not in line and not re.match(r"IP \S+ > \S+: IP ", line), line


def test_cross_subnet_encapsulates_only_toward_the_other_subnet(lab: tuple[Lab, dict, str]) -> None:
    lab_, pods, kind = lab
    router = LabPaths(lab_.name).router_netns("router")
    routes = subprocess.run(["ip", "-n", router, "route"], capture_output=True, text=True, check=True).stdout
    assert "10.244." not in routes, routes
    near, far = pods["enc-near"]["status"]["podIP"], pods["enc-far"]["status"]["podIP"]
    codes: list[str] = []
    plain = _capture(lab_, lambda: codes.append(_code(lab_, near)))
    wrapped = _capture(lab_, lambda: codes.append(_code(lab_, far)))
    assert codes == ["200", "200"]
    _check_wire(plain, kind, W1, near, want_encap=False)
    _check_wire(wrapped, kind, W0, far, want_encap=True)
    tunnel = lab_.run("bpf", "tunnel", "list", "--node", "k8s-ctr").stdout.splitlines()
    suffix = ["(ipip)"] if kind == "ipip" else []
    assert [line.split() for line in tunnel[1:]] == [["10.244.2.0:0", f"{W0}:0", *suffix]], tunnel


def test_pod_mtu_status_and_node_to_remote_pod(lab: tuple[Lab, dict, str]) -> None:
    lab_, pods, kind = lab
    assert lab_.exec("enc-cli", "cat", "/sys/class/net/eth0/mtu").stdout.strip() == (
        "1450" if kind == "vxlan" else "1480")
    status = lab_.run("status", "--node", "k8s-ctr").stdout
    assert re.search(rf"^Routing:\s+Network: Tunnel \[{kind}, CrossSubnet\]", status, re.M), status
    far = pods["enc-far"]["status"]["podIP"]
    out = lab_.node_exec("k8s-ctr", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3",
                         f"http://{far}/", check=False).stdout.strip()
    assert out == "200", "the node could not reach a pod on the other subnet"


def test_an_ippool_with_always_encapsulates_the_same_subnet_too(lab: tuple[Lab, dict, str]) -> None:
    lab_, pods, kind = lab
    near = pods["enc-near"]["status"]["podIP"]
    lab_.apply(ALWAYS_POOL % kind)
    try:
        wide = lab_.run("get", "ippools.crd.projectcalico.org", "-o", "wide").stdout.splitlines()
        assert wide[0].split() == ["NAME", "CIDR", "AGE", "IPIPMODE", "VXLANMODE", "NATOUTGOING", "DISABLED"], wide
        row = wide[1].split()
        assert (row[0], row[1], row[3], row[4]) == ("default-ipv4-ippool", "10.244.0.0/16",
                                                    "Always" if kind == "ipip" else "Never",
                                                    "Always" if kind == "vxlan" else "Never"), wide

        def tunnelled() -> bool:
            rows = lab_.run("bpf", "tunnel", "list", "--node", "k8s-ctr").stdout
            return "10.244.1.0:0" in rows

        lab_.wait_for(tunnelled, 15, "the same-subnet node's CIDR to enter the tunnel map")
        codes: list[str] = []
        lines = _capture(lab_, lambda: codes.append(_code(lab_, near)))
        assert codes == ["200"]
        _check_wire(lines, kind, W1, near, want_encap=True)
        status = lab_.run("status", "--node", "k8s-ctr").stdout
        assert re.search(rf"^Routing:\s+Network: Tunnel \[{kind}\]\s", status, re.M), status
    finally:
        lab_.run("delete", "ippools.crd.projectcalico.org", "default-ipv4-ippool", check=False)
    lab_.wait_for(lambda: "10.244.1.0:0" not in lab_.run("bpf", "tunnel", "list", "--node", "k8s-ctr").stdout,
                  15, "CrossSubnet to come back")
    assert _code(lab_, near) == "200"


def test_policy_still_drops_with_133_through_the_encapsulation(lab: tuple[Lab, dict, str]) -> None:
    lab_, pods, _kind = lab
    far = pods["enc-far"]["status"]["podIP"]

    def drops() -> int:
        return lab_.agent_status("k8s-w0").get("datapath-metrics", {}).get("133/ingress", {}).get("packets", 0)

    before = drops()
    lab_.apply(ONLY_OTHERS)
    lab_.wait_for(lambda: _code(lab_, far) == "000", 10, "the policy to drop enc-cli")
    assert drops() > before
    lab_.run("delete", "cnp", "enc-far-only-others")
    lab_.wait_for(lambda: _code(lab_, far) == "200", 10, "the policy to go")


def test_a_running_lab_refuses_to_switch_encapsulation(lab: tuple[Lab, dict, str]) -> None:
    lab_, _, kind = lab
    other = "ipip" if kind == "vxlan" else "vxlan"
    proc = lab_.run("lab", "upgrade", "--reuse-values", "--set", f"encapsulation.type={other}", check=False)
    assert proc.returncode == 1 and f"encapsulation.type: {kind} -> {other} needs a new lab" in proc.stderr, (
        proc.stderr)
    proc = lab_.run("lab", "upgrade", "--reuse-values", "--set", "encapsulation.type=gre", check=False)
    assert proc.returncode == 1 and "encapsulation.type 'gre' is not one of vxlan, ipip" in proc.stderr, proc.stderr
    status = lab_.run("status", "--node", "k8s-ctr").stdout
    assert f"Tunnel [{kind}, CrossSubnet]" in status, status


def test_a_pool_of_the_other_type_is_followed_only_if_it_fits_the_pods_mtu(lab: tuple[Lab, dict, str]) -> None:
    """vxlan lab (headroom 50) + an ipip pool: followed; ipip lab (headroom 20) + a vxlan pool: not
    followed (its packets would not fit), said in status, the tunnel map stays as it was."""
    lab_, pods, kind = lab
    other = "ipip" if kind == "vxlan" else "vxlan"
    before = lab_.run("bpf", "tunnel", "list", "--node", "k8s-ctr").stdout
    lab_.apply(ALWAYS_POOL % other)
    try:
        if other == "ipip":
            lab_.wait_for(lambda: "10.244.1.0:0   192.168.10.101:0 (ipip)" in lab_.run(
                "bpf", "tunnel", "list", "--node", "k8s-ctr").stdout, 15, "the ipip pool to be followed")
            assert _code(lab_, pods["enc-near"]["status"]["podIP"]) == "200"
        else:
            def ignored() -> str:
                routing = lab_.agent_status("k8s-ctr").get("routing", {})
                return str(routing.get("encapsulation", {}).get("ignored", ""))

            lab_.wait_for(ignored, 15, "the agent to say it does not follow the vxlan pool")
            assert "needs 50 bytes of MTU headroom, pods were created with 20" in ignored()
            assert lab_.run("bpf", "tunnel", "list", "--node", "k8s-ctr").stdout == before
    finally:
        lab_.run("delete", "ippools.crd.projectcalico.org", "default-ipv4-ippool", check=False)
    lab_.wait_for(lambda: lab_.run("bpf", "tunnel", "list", "--node", "k8s-ctr").stdout == before, 15,
                  "the lab's own encapsulation to come back")


def test_bulk_tcp_crosses_the_encapsulation(lab: tuple[Lab, dict, str]) -> None:
    """Full-size (GSO) segments go through too: with the FIB's MTU check on a GSO packet's whole
    length, IPIP once dropped every bulk packet while small requests passed."""
    if not shutil.which("iperf3"):
        pytest.skip("iperf3 not installed")
    lab_, pods, _kind = lab
    paths = LabPaths(lab_.name)
    server = subprocess.Popen(["ip", "netns", "exec", paths.pod_netns("default", "enc-far"), "iperf3", "-s", "-1",
                               "-p", "5999"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        out = subprocess.run(["ip", "netns", "exec", paths.pod_netns("default", "enc-cli"), "iperf3", "-c",
                              pods["enc-far"]["status"]["podIP"], "-p", "5999", "-t", "1", "-J"],
                             capture_output=True, text=True, timeout=30)
    finally:
        server.kill()
        server.wait(timeout=10)
    report = json.loads(out.stdout)
    bps = report["end"]["sum_received"]["bits_per_second"]
    assert bps > 100e6, f"{bps / 1e6:.1f} Mbit/s across the encapsulation"
