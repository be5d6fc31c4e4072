"""North-south: NodePort, ExternalIPs and LoadBalancer IPs from the outside world, handled by BPF on eth1."""

from __future__ import annotations

import subprocess

import pytest

from tests.lab.harness import MEMBRANE, Lab

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


TAKER = """
apiVersion: v1
kind: Pod
metadata: {name: taker}
spec:
  nodeName: k8s-w2
  containers: [{name: web, image: traefik/whoami, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: taker}
spec:
  type: NodePort
  selector: {app: taker}
  ports: [{port: 80, nodePort: 30080}]
"""


def _apply_refused(lab: Lab, manifest: str) -> str:
    proc = lab.run("apply", "-f", "-", input=manifest, check=False)
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_apply_refuses_a_taken_node_port_stores_nothing_and_traffic_stays(lab: Lab, app: dict) -> None:
    """Issue 13: a Service asking for a nodePort another holds used to be stored and take the port over."""
    err = _apply_refused(lab, TAKER)
    assert ('The Service "taker" is invalid: spec.ports[0].nodePort: Invalid value: 30080: '
            "provided port is already allocated") in err
    for kind in ("pod", "svc"):  # the whole apply was refused: not even the pod
        assert lab.run("get", kind, "taker", check=False).returncode != 0
    assert _hostnames(lab, "http://192.168.10.101:30080/", 6) <= {"np-a", "np-b"}
    np_ip = lab.get_json("svc", "np")[0]["spec"]["clusterIP"]
    err = _apply_refused(lab, f"apiVersion: v1\nkind: Service\nmetadata: {{name: ip-taker}}\n"
                              f"spec: {{clusterIP: {np_ip}, ports: [{{port: 80}}]}}\n")
    assert (f'spec.clusterIPs: Invalid value: []string{{"{np_ip}"}}: failed to allocate IP {np_ip}: '
            "provided IP is already allocated") in err
    err = _apply_refused(lab, "apiVersion: v1\nkind: Service\nmetadata: {name: outside}\n"
                              "spec: {clusterIP: 10.97.0.5, ports: [{port: 80}]}\n")
    assert "The range of valid IPs is 10.96.0.0/16" in err
    assert lab.run("get", "svc", "ip-taker", check=False).returncode != 0


def test_two_applies_at_once_never_share_an_address(lab: Lab, app: dict) -> None:
    """Issue 18 item 7: two `membrane apply` processes started together."""
    def manifest(name: str, node_port: str) -> str:
        return (f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n"
                f"spec: {{type: NodePort, selector: {{app: {name}}}, ports: [{{port: 80{node_port}}}]}}\n")

    def together(*docs: str) -> list[subprocess.Popen[str]]:
        procs = [subprocess.Popen([MEMBRANE, "--lab", lab.name, "apply", "-f", "-"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in docs]
        for proc, doc in zip(procs, docs, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(doc)
            proc.stdin.close()
        for proc in procs:
            proc.wait(timeout=60)
        return procs

    fixed = together(manifest("race-a", ", nodePort: 30300"), manifest("race-b", ", nodePort: 30300"))
    assert sorted(p.returncode for p in fixed) == [0, 1]
    loser = next(p for p in fixed if p.returncode)
    assert "provided port is already allocated" in (loser.stderr.read() if loser.stderr else "")
    auto = together(manifest("auto-a", ""), manifest("auto-b", ""))
    assert [p.returncode for p in auto] == [0, 0]
    specs = [lab.get_json("svc", name)[0]["spec"] for name in ("auto-a", "auto-b")]
    assert specs[0]["clusterIP"] != specs[1]["clusterIP"]
    assert specs[0]["ports"][0]["nodePort"] != specs[1]["ports"][0]["nodePort"]
    lab.run("delete", "svc", "auto-a")
    lab.run("delete", "svc", "auto-b")
