"""Tunnel routing (routingMode=tunnel) on the two-subnet lab: the router between the subnets
learns no pod route, yet pods on the two nodes talk; on the underlay the only packets with pod
traffic are UDP 8472 between the node IPs (tcpdump in the router); pods get MTU 1450; policy on
the receiving node still drops with 133; status and bpf tunnel list show it; a running lab
refuses to switch routing mode; a NodePort on one node reaches a backend on the other through the
tunnel."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from membrane.lab.paths import LabPaths
from tests.lab.harness import Lab, unique_lab

ROUTED = """
nodes:
  - {name: k8s-ctr, ip: 192.168.10.100/24, podCIDR: 10.244.0.0/24}
  - {name: k8s-w1, ip: 192.168.20.101/24, podCIDR: 10.244.1.0/24}
router: {name: router, ips: [192.168.10.200/24, 192.168.20.200/24]}
settings: {ipam.mode: kubernetes}
"""
NODE_IPS = {"192.168.10.100", "192.168.20.101"}
PODS = """
apiVersion: v1
kind: Pod
metadata: {name: tun-srv, labels: {app: tun-srv}}
spec:
  nodeName: k8s-w1
  containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: tun-cli, labels: {app: tun-cli}}
spec:
  nodeName: k8s-ctr
  containers: [{name: c, image: curlimages/curl}]
"""
NODEPORT = """
apiVersion: v1
kind: Service
metadata: {name: tun-np}
spec:
  type: NodePort
  selector: {app: tun-srv}
  ports: [{port: 80, targetPort: 80, nodePort: 30090}]
"""
ONLY_OTHERS = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: tun-srv-only-others}
spec:
  endpointSelector: {matchLabels: {app: tun-srv}}
  ingress: [{fromEndpoints: [{matchLabels: {app: nobody}}]}]
"""


@pytest.fixture(scope="module")
def lab(lab_requirements: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, dict]]:
    if not shutil.which("tcpdump"):
        pytest.skip("tcpdump not installed (Debian package tcpdump; make setup installs it)")
    cfg = tmp_path_factory.mktemp("lab") / "lab.yaml"
    cfg.write_text(ROUTED)
    lab = Lab(unique_lab())
    try:
        lab.create("--config", str(cfg), "--set", "routingMode=tunnel")
        lab.apply(PODS)
        yield lab, lab.wait_pods_ready(["tun-srv", "tun-cli"], timeout=90)
    finally:
        lab.delete()
        left = lab.leftovers()
        assert not left, f"lab delete left things behind: {left}"


def _code(lab: Lab, ip: str) -> str:
    return lab.exec("tun-cli", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2",
                    f"http://{ip}/", check=False).stdout.strip()


def test_pods_talk_across_a_router_that_knows_no_pod_routes(lab: tuple[Lab, dict]) -> None:
    lab_, pods = lab
    router = LabPaths(lab_.name).router_netns("router")
    routes = subprocess.run(["ip", "-n", router, "route"], capture_output=True, text=True, check=True).stdout
    assert "10.244." not in routes, routes
    assert "10.244.1.0" not in lab_.node_exec("k8s-ctr", "ip", "route").stdout
    srv_ip, cli_ip = pods["tun-srv"]["status"]["podIP"], pods["tun-cli"]["status"]["podIP"]
    dump = subprocess.Popen(["ip", "netns", "exec", router, "tcpdump", "-i", "any", "-n", "-l", "-q",
                             "net 10.244.0.0/16 or udp port 8472"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # tcpdump is listening
        assert _code(lab_, srv_ip) == "200"
        time.sleep(0.5)
    finally:
        dump.terminate()
        out, _err = dump.communicate(timeout=10)
    lines = [line for line in out.splitlines() if " IP " in line]
    assert len(lines) >= 10, out  # TCP handshake, request, response, close: both ways, both router legs
    for line in lines:
        ends = re.findall(r"(\d+\.\d+\.\d+\.\d+)\.(\d+)", line)
        assert {a for a, _ in ends} <= NODE_IPS and "8472" in {p for _, p in ends} and "UDP" in line, line
    assert cli_ip not in out and srv_ip not in out


def test_the_node_reaches_a_pod_on_the_other_node_through_the_tunnel(lab: tuple[Lab, dict]) -> None:
    lab_, pods = lab
    srv_ip = pods["tun-srv"]["status"]["podIP"]
    out = lab_.node_exec("k8s-ctr", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3",
                         f"http://{srv_ip}/", check=False).stdout.strip()
    assert out == "200", "node-to-remote-pod failed in tunnel mode"


def test_pods_get_the_mtu_less_the_tunnel_overhead(lab: tuple[Lab, dict]) -> None:
    lab_, _ = lab
    assert lab_.exec("tun-cli", "cat", "/sys/class/net/eth0/mtu").stdout.strip() == "1450"


def test_status_and_tunnel_map(lab: tuple[Lab, dict]) -> None:
    lab_, _ = lab
    status = lab_.run("status", "--node", "k8s-ctr").stdout
    assert re.search(r"^Routing:\s+Network: Tunnel \[vxlan\]\s+Host: BPF", status, re.M), status
    # the devices' programs are reconciler rows (agent/host_device.py, agent/tunnel_sync.py)
    devices = {r["name"]: r for r in lab_.agent_status("k8s-ctr")["reconcilers"]}
    for name in ("bpf-host-device", "bpf-tunnel-device"):
        assert devices[name]["rows"] == 1 and devices[name]["done"] == 1, devices[name]
    lines = lab_.run("bpf", "tunnel", "list", "--node", "k8s-ctr").stdout.splitlines()
    assert lines[0].split() == ["TUNNEL", "VALUE"] and [line.split() for line in lines[1:]] == [
        ["10.244.1.0:0", "192.168.20.101:0"]]


def test_nodeport_on_one_node_reaches_a_backend_on_the_other_through_the_tunnel(lab: tuple[Lab, dict]) -> None:
    lab_, _ = lab
    lab_.apply(NODEPORT)

    def code() -> str:
        return lab_.run("lab", "exec", "world", "--", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                        "--max-time", "2", "http://192.168.10.100:30090/", check=False).stdout.strip()

    lab_.wait_for(lambda: code() == "200", 15, "NodePort on k8s-ctr to answer from the backend on k8s-w1")
    lab_.run("delete", "svc", "tun-np")


def test_policy_on_the_receiving_node_still_drops_with_133(lab: tuple[Lab, dict]) -> None:
    lab_, pods = lab
    srv_ip = pods["tun-srv"]["status"]["podIP"]

    def drops() -> int:
        return lab_.agent_status("k8s-w1").get("datapath-metrics", {}).get("133/ingress", {}).get("packets", 0)

    before = drops()
    lab_.apply(ONLY_OTHERS)
    lab_.wait_for(lambda: _code(lab_, srv_ip) == "000", 10, "the policy to drop tun-cli")
    assert drops() > before
    lab_.run("delete", "cnp", "tun-srv-only-others")
    lab_.wait_for(lambda: _code(lab_, srv_ip) == "200", 10, "the policy to go")


def test_a_running_lab_refuses_to_switch_routing_mode(lab: tuple[Lab, dict]) -> None:
    lab_, _ = lab
    proc = lab_.run("lab", "upgrade", "--reuse-values", "--set", "routingMode=native", check=False)
    assert proc.returncode == 1 and "routingMode: tunnel -> native needs a new lab" in proc.stderr, proc.stderr
