"""WireGuard (encryption.enabled=true, encryption.type=wireguard) on the two-subnet lab, in native and in
tunnel routing (where pod traffic goes into cilium_wg0 instead of VXLAN): pod traffic between nodes crosses the router only as UDP 51871 between node IPs and its payload never
appears on the wire (tcpdump in the router, which does know the pod routes, so a clear-text leak would
show); pods get MTU 1420; status and encrypt status show the device and its peers; killing the
wireguard-go the agent started (by its PID) is detected and recovered, and traffic flows again."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from membrane.lab import builder
from membrane.lab.daemons import LabError
from membrane.lab.paths import LabPaths
from membrane.lab.topology import build_topology
from tests.lab.harness import Lab, unique_lab

ROUTED = """
nodes:
  - {name: k8s-ctr, ip: 192.168.10.100/24, podCIDR: 10.244.0.0/24}
  - {name: k8s-w1, ip: 192.168.20.101/24, podCIDR: 10.244.1.0/24}
  - {name: k8s-w2, ip: 192.168.20.102/24, podCIDR: 10.244.2.0/24}
router: {name: router, ips: [192.168.10.200/24, 192.168.20.200/24]}
settings: {ipam.mode: kubernetes}
"""
NODE_IPS = {"192.168.10.100", "192.168.20.101", "192.168.20.102"}
PODS = """
apiVersion: v1
kind: Pod
metadata: {name: wg-srv, labels: {app: wg-srv}}
spec:
  nodeName: k8s-w1
  containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: wg-cli, labels: {app: wg-cli}}
spec:
  nodeName: k8s-ctr
  containers: [{name: c, image: curlimages/curl}]
"""
NODEPORT = """
apiVersion: v1
kind: Service
metadata: {name: wg-np}
spec:
  type: NodePort
  selector: {app: wg-srv}
  ports: [{port: 80, targetPort: 80, nodePort: 30091}]
"""


@pytest.fixture(scope="module", params=["native", "tunnel"])
def lab(lab_requirements: None, tmp_path_factory: pytest.TempPathFactory,
        request: pytest.FixtureRequest) -> Iterator[tuple[Lab, dict]]:
    for tool in ("tcpdump", "wireguard-go", "wg"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (make setup installs it)")
    cfg = tmp_path_factory.mktemp("lab") / "lab.yaml"
    cfg.write_text(ROUTED)
    lab = Lab(unique_lab())
    try:
        lab.create("--config", str(cfg), "--set", "encryption.enabled=true", "--set", "encryption.type=wireguard",
                   "--set", f"routingMode={request.param}")
        lab.apply(PODS)
        yield lab, lab.wait_pods_ready(["wg-srv", "wg-cli"], timeout=90)
    finally:
        lab.delete()
        left = lab.leftovers()
        assert not left, f"lab delete left things behind: {left}"


def _code(lab: Lab, url: str) -> str:
    return lab.exec("wg-cli", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2",
                    url, check=False).stdout.strip()


def _encrypt(lab: Lab, node: str) -> dict:
    return json.loads(lab.run("encrypt", "status", "--node", node, "-o", "json").stdout)


def _peers_up(lab: Lab, node: str, count: int) -> bool:
    """The node's device has ``count`` peers (False while its agent cannot be reached)."""
    enc = lab.agent_status(node).get("encryption") or {}
    ifaces = (enc.get("wireguard") or {}).get("interfaces") or [{}]
    return ifaces[0].get("peer-count") == count


def test_pod_traffic_crosses_the_underlay_only_as_wireguard(lab: tuple[Lab, dict]) -> None:
    lab_, pods = lab
    router = LabPaths(lab_.name).router_netns("router")
    routes = subprocess.run(["ip", "-n", router, "route"], capture_output=True, text=True, check=True).stdout
    if lab_.agent_status("k8s-ctr")["routing"]["inter-host-routing-mode"] == "Native":
        assert "10.244.1.0/24" in routes, routes  # native: the router could carry clear pod traffic; none may reach it
    srv_ip, cli_ip = pods["wg-srv"]["status"]["podIP"], pods["wg-cli"]["status"]["podIP"]
    lab_.wait_for(lambda: _code(lab_, f"http://{srv_ip}/") in ("200", "404"),
                  20, "the first request through WireGuard")
    secret = f"wg-secret-{uuid.uuid4().hex}"
    dump = subprocess.Popen(["ip", "netns", "exec", router, "tcpdump", "-i", "any", "-n", "-l", "-A", "-q",
                             "not arp"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace")
    try:
        time.sleep(1.5)  # tcpdump is listening
        code = _code(lab_, f"http://{srv_ip}/{secret}")
        time.sleep(0.5)
    finally:
        dump.terminate()
        out, _err = dump.communicate(timeout=10)
    assert code in ("200", "404"), code  # the server answered: the request crossed
    assert secret not in out
    headers = [line for line in out.splitlines() if re.match(r"^\d\d:\d\d:\d\d\.\d+ ", line) and " IP " in line]
    wire = [line for line in headers if "51871" in line]
    assert len(wire) >= 6, out[-3000:]  # request and response, both router legs
    for line in headers:
        ends = re.findall(r"(\d+\.\d+\.\d+\.\d+)\.(\d+)", line)
        if any(a.startswith("10.244.") for a, _ in ends):
            pytest.fail(f"pod address on the wire: {line}")
        if {a for a, _ in ends} <= NODE_IPS and ends and "4244" not in {p for _, p in ends}:
            assert "51871" in {p for _, p in ends} and "UDP" in line, line
    assert cli_ip not in out and srv_ip not in out


def test_pods_get_the_mtu_less_the_wireguard_overhead(lab: tuple[Lab, dict]) -> None:
    lab_, _ = lab
    assert lab_.exec("wg-cli", "cat", "/sys/class/net/eth0/mtu").stdout.strip() == "1420"


def test_status_and_encrypt_status_show_device_key_and_peers(lab: tuple[Lab, dict]) -> None:
    lab_, _ = lab
    lab_.wait_for(lambda: _peers_up(lab_, "k8s-ctr", 2), 20, "k8s-ctr to have both peers")
    status = lab_.run("status", "--node", "k8s-ctr").stdout
    match = re.search(r"^Encryption:\s+Wireguard\s+\[cilium_wg0 \(Pubkey: (\S{44}), Port: 51871, Peers: 2\)\]$",
                      status, re.M)
    assert match, status
    text = lab_.run("encrypt", "status", "--node", "k8s-ctr").stdout
    assert f"Encryption: Wireguard\nInterface: cilium_wg0\n\tPublic key: {match.group(1)}\n\tNumber of peers: 2" \
        in text, text
    node = lab_.get_json("node", "k8s-w1")[0]
    w1_key = node["metadata"]["annotations"]["network.cilium.io/wg-pub-key"]
    peer = next(p for p in _encrypt(lab_, "k8s-ctr")["wireguard"]["interfaces"][0]["peers"]
                if p["public-key"] == w1_key)
    assert peer["endpoint"] == "192.168.20.101:51871"
    router_ip = node["metadata"]["annotations"]["membrane.io/router-ip"]
    assert sorted(peer["allowed-ips"]) == sorted(["10.244.1.0/24", f"{router_ip}/32", "192.168.20.101/32"]), peer
    routes = lab_.node_exec("k8s-ctr", "ip", "route", "show", "proto", "212").stdout
    for cidr in ("10.244.1.0/24", "10.244.2.0/24"):  # into the device, and a blackhole behind it
        assert f"{cidr} dev cilium_wg0" in routes and f"blackhole {cidr}" in routes, routes


def test_killing_wireguard_go_is_detected_and_recovered(lab: tuple[Lab, dict]) -> None:
    lab_, pods = lab
    srv_ip = pods["wg-srv"]["status"]["podIP"]
    before = _encrypt(lab_, "k8s-w1")["process"]
    pid = before["pid"]
    with open(f"/proc/{pid}/comm") as fh:
        assert fh.read().strip() == "wireguard-go"
    os.kill(pid, 9)  # the process the agent started, by its PID
    lab_.wait_for(lambda: _encrypt(lab_, "k8s-w1")["process"]["restarts"] == before["restarts"] + 1, 15,
                  "the agent to restart wireguard-go")
    after = _encrypt(lab_, "k8s-w1")
    assert after["process"]["pid"] != pid and "exited" in after["process"]["last-restart-reason"], after
    lab_.wait_for(lambda: _peers_up(lab_, "k8s-w1", 2), 15, "k8s-w1's peers again")
    lab_.wait_for(lambda: _code(lab_, f"http://{srv_ip}/") in ("200", "404"), 30, "traffic through the new device")


def test_nodeport_to_a_backend_on_another_node_goes_through_wireguard(lab: tuple[Lab, dict]) -> None:
    """The host programs forward a NodePort's translated packet by the FIB (cilium_wg0), not
    straight out of the underlay: from k8s-ctr to k8s-w1 only UDP 51871 crosses the router. (The
    backend's reply goes to k8s-ctr's node IP: pod-to-node traffic, not encrypted, as in Cilium
    without nodeEncryption.)"""
    lab_, _ = lab
    lab_.apply(NODEPORT)
    router = LabPaths(lab_.name).router_netns("router")

    def code() -> str:
        return lab_.run("lab", "exec", "world", "--", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                        "--max-time", "2", "http://192.168.10.100:30091/", check=False).stdout.strip()

    lab_.wait_for(lambda: code() in ("200", "404"), 20, "the NodePort on k8s-ctr to answer from k8s-w1")
    dump = subprocess.Popen(["ip", "netns", "exec", router, "tcpdump", "-i", "any", "-n", "-l", "-q",
                             "src host 192.168.10.100 and dst host 192.168.20.101 and not tcp port 4244"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        assert code() in ("200", "404")
        time.sleep(0.5)
    finally:
        dump.terminate()
        out, _err = dump.communicate(timeout=10)
    lines = [line for line in out.splitlines() if " IP " in line]
    assert lines, out
    for line in lines:
        assert ".51871 " in line and "UDP" in line, line
    lab_.run("delete", "svc", "wg-np")


def test_while_an_agent_is_down_pod_traffic_to_its_node_is_dropped_not_sent_in_clear(lab: tuple[Lab, dict]) -> None:
    """wireguard-go goes with its agent; the blackholes stay. Nothing from or to pod addresses
    crosses the router meanwhile (in native routing it knows the pod routes and would carry clear
    text). The agent back, it keeps its key and traffic flows again."""
    lab_, pods = lab
    srv_ip = pods["wg-srv"]["status"]["podIP"]
    key = lab_.get_json("node", "k8s-w1")[0]["metadata"]["annotations"]["network.cilium.io/wg-pub-key"]
    router = LabPaths(lab_.name).router_netns("router")
    lab_.run("lab", "stop", "agent-k8s-w1")
    try:
        lab_.wait_for(lambda: "cilium_wg0" not in lab_.node_exec("k8s-w1", "ip", "link").stdout, 15,
                      "k8s-w1's WireGuard device to go with its agent")
        routes = lab_.node_exec("k8s-w1", "ip", "route", "show", "proto", "212").stdout
        assert "blackhole 10.244.0.0/24" in routes and "cilium_wg0" not in routes, routes
        dump = subprocess.Popen(["ip", "netns", "exec", router, "tcpdump", "-i", "any", "-n", "-l", "-q",
                                 "net 10.244.0.0/16"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.5)
            assert _code(lab_, f"http://{srv_ip}/") == "000"
            time.sleep(0.5)
        finally:
            dump.terminate()
            out, _err = dump.communicate(timeout=10)
        assert not [line for line in out.splitlines() if " IP " in line], out
    finally:
        lab_.run("lab", "start", "agent-k8s-w1")
    lab_.wait_for(lambda: _peers_up(lab_, "k8s-w1", 2), 60, "k8s-w1's agent and peers back")
    assert lab_.get_json("node", "k8s-w1")[0]["metadata"]["annotations"]["network.cilium.io/wg-pub-key"] == key
    lab_.wait_for(lambda: _code(lab_, f"http://{srv_ip}/") in ("200", "404"), 30, "traffic through k8s-w1 again")


def test_lab_create_without_wireguard_go_is_refused_before_anything_is_made(
        lab_requirements: None, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: neither wireguard-go nor wg
    topo = build_topology(settings=["encryption.enabled=true"])
    name = unique_lab()
    with pytest.raises(LabError, match=r"encryption.enabled=true needs wireguard-go and wg: run 'make setup'"):
        builder.create(name, topo, lambda _msg: None)
    assert not os.path.exists(LabPaths(name).run_dir) and not builder.lab_netns(name)
