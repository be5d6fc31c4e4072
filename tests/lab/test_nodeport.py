"""North-south: NodePort, ExternalIPs and LoadBalancer IPs from the outside world, handled by BPF on eth1."""

from __future__ import annotations

import pytest

from tests.lab.harness import Lab

WORLD = "192.168.10.200"  # the outside client (membrane/lab/world.py: .200 of the node subnet)
LB_IP = "10.10.200.1"

APP = f"""
apiVersion: v1
kind: Pod
metadata: {{name: np-a, labels: {{app: np}}}}
spec:
  nodeName: k8s-w1
  containers: [{{name: web, image: traefik/whoami, ports: [{{containerPort: 80}}]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: np-b, labels: {{app: np}}}}
spec:
  nodeName: k8s-w2
  containers: [{{name: web, image: traefik/whoami, ports: [{{containerPort: 80}}]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: np-local, labels: {{app: np-local}}}}
spec:
  nodeName: k8s-w1
  containers: [{{name: web, image: traefik/whoami, ports: [{{containerPort: 80}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: np}}
spec:
  type: NodePort
  selector: {{app: np}}
  ports: [{{port: 80, nodePort: 30080}}]
  externalIPs: [192.168.10.101]
---
apiVersion: v1
kind: Service
metadata: {{name: np-local}}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {{app: np-local}}
  ports: [{{port: 80, nodePort: 30081}}]
---
apiVersion: v1
kind: Service
metadata: {{name: lb}}
spec:
  type: LoadBalancer
  selector: {{app: np}}
  ports: [{{port: 80}}]
status:
  loadBalancer:
    ingress: [{{ip: {LB_IP}}}]
"""


@pytest.fixture(scope="module")
def app(lab: Lab) -> dict:
    lab.apply(APP)
    pods = lab.wait_pods_ready(["np-a", "np-b", "np-local"])
    lab.wait_for(lambda: len(lab.get_json("ep", "np")[0].get("subsets", [{}])[0].get("addresses", [])) == 2,
                 30, "two endpoints behind np")
    return pods


def _world_curl(lab: Lab, url: str, check: bool = True) -> str:
    return lab.run("lab", "exec", "world", "--", "curl", "-s", "--max-time", "3", url, check=check).stdout


def _hostnames(lab: Lab, url: str, count: int) -> set[str]:
    out = lab.run("lab", "exec", "world", "--", "sh", "-c",
                  f"for i in $(seq {count}); do curl -s --max-time 3 {url} | head -1; done", timeout=90).stdout
    return {line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("Hostname:")}


def test_nodeport_from_the_world_through_every_node(lab: Lab, app: dict) -> None:
    for node_ip in ("192.168.10.100", "192.168.10.101", "192.168.10.102"):
        lab.wait_for(lambda ip=node_ip: "Hostname: np-" in _world_curl(lab, f"http://{ip}:30080/", check=False),
                     20, f"NodePort on {node_ip}")
    seen = _hostnames(lab, "http://192.168.10.100:30080/", 16)
    assert seen == {"np-a", "np-b"}  # backends on both other nodes, reached through k8s-ctr (SNAT mode)


def test_external_ip_and_load_balancer_ip(lab: Lab, app: dict) -> None:
    assert "Hostname: np-" in _world_curl(lab, "http://192.168.10.101/")
    # Nothing announces the LoadBalancer IP yet (no L2 announcements / BGP): route it to a node by hand.
    lab.run("lab", "exec", "world", "--", "ip", "route", "replace", f"{LB_IP}/32", "via", "192.168.10.102")
    assert "Hostname: np-" in _world_curl(lab, f"http://{LB_IP}/")


def test_external_traffic_policy_local_keeps_the_client_ip(lab: Lab, app: dict) -> None:
    out = _world_curl(lab, "http://192.168.10.101:30081/")
    assert "Hostname: np-local" in out and f"RemoteAddr: {WORLD}:" in out
    # k8s-w2 has no local backend: the connection goes nowhere.
    assert "Hostname" not in _world_curl(lab, "http://192.168.10.102:30081/", check=False)


def test_host_port_reaches_the_pod_from_the_world(lab: Lab, app: dict) -> None:
    lab.apply("apiVersion: v1\nkind: Pod\nmetadata: {name: hostport}\nspec:\n  nodeName: k8s-w2\n"
              "  containers: [{name: web, image: traefik/whoami, ports: [{containerPort: 80, hostPort: 8088}]}]\n")
    lab.wait_pods_ready(["hostport"])
    lab.wait_for(lambda: "Hostname: hostport" in _world_curl(lab, "http://192.168.10.102:8088/", check=False),
                 20, "hostPort 8088 on k8s-w2")
    assert "HostPort" in lab.run("service", "list", "--node", "k8s-w2").stdout


def test_bpf_nat_list_shows_the_nodeport_snat(lab: Lab, app: dict) -> None:
    _hostnames(lab, "http://192.168.10.100:30080/", 4)  # through k8s-ctr to remote backends: SNAT
    out = lab.run("bpf", "nat", "list", "--node", "k8s-ctr").stdout
    assert "192.168.10.100" in out and out.strip()
