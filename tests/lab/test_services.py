"""Services in eBPF from pods: ClusterIP load balancing, DNS names, no-backend refusal, scaling."""

from __future__ import annotations

import collections

import pytest

from tests.lab.harness import Lab

APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: traefik/whoami, ports: [{containerPort: 80, name: http}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 8080, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  ports: [{port: 80, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  selector: {app: nobody}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: k8s-ctr
  containers: [{name: c, image: nicolaka/netshoot}]
"""


@pytest.fixture(scope="module")
def app(lab: Lab) -> dict:
    lab.apply(APP)
    lab.wait_for(lambda: len([p for p in lab.get_json("pods") if p["metadata"]["name"].startswith("web-")]) == 4,
                 30, "4 web pods")
    names = [p["metadata"]["name"] for p in lab.get_json("pods")]
    return lab.wait_pods_ready(names, timeout=60)


def _hostnames(lab: Lab, url: str, count: int) -> collections.Counter[str]:
    script = f"for i in $(seq {count}); do curl -s --max-time 2 {url} | head -1; done"
    out = lab.exec("client", "sh", "-c", script, timeout=60).stdout
    return collections.Counter(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("Hostname:"))


def _wait_backends(lab: Lab, service: str, count: int) -> None:
    def ready() -> bool:
        eps = lab.get_json("ep", service)
        return sum(len(s.get("addresses", [])) for s in eps[0].get("subsets", [])) == count if eps else False
    lab.wait_for(ready, 30, f"{count} endpoints behind {service}")


def test_clusterip_spreads_over_backends_on_both_nodes(lab: Lab, app: dict) -> None:
    _wait_backends(lab, "web", 4)
    svc = lab.get_json("svc", "web")[0]
    ip = svc["spec"]["clusterIP"]
    assert ip.startswith("10.96.")
    seen = _hostnames(lab, f"http://{ip}:8080/", 24)
    nodes = {app[name]["spec"]["nodeName"] for name in seen}
    assert len(seen) >= 3 and len(nodes) >= 2, (seen, nodes)
    # The backend sees the client pod's own address (no SNAT on the pod → ClusterIP path).
    out = lab.exec("client", "curl", "-s", f"http://{ip}:8080/").stdout
    assert f"RemoteAddr: {app['client']['status']['podIP']}:" in out


def test_service_names_resolve_through_cluster_dns(lab: Lab, app: dict) -> None:
    svc_ip = lab.get_json("svc", "web")[0]["spec"]["clusterIP"]
    out = lab.exec("client", "nslookup", "web").stdout
    assert "web.default.svc.cluster.local" in out and svc_ip in out
    assert "Hostname: web-" in lab.exec("client", "curl", "-s", "--max-time", "3", "http://web:8080/").stdout
    missing = lab.exec("client", "nslookup", "no-such-service", check=False)
    assert missing.returncode != 0 or "NXDOMAIN" in missing.stdout


def test_no_backends_is_refused_at_once(lab: Lab, app: dict) -> None:
    ip = lab.get_json("svc", "empty")[0]["spec"]["clusterIP"]
    proc = lab.exec("client", "curl", "-s", "-o", "/dev/null", "-w", "%{time_total}", "--max-time", "3",
                    f"http://{ip}/", check=False)
    assert proc.returncode == 7  # curl: failed to connect (refused), not 28 (timeout)
    assert float(proc.stdout) < 1.0


def test_session_affinity_sticks_to_one_backend(lab: Lab, app: dict) -> None:
    _wait_backends(lab, "sticky", 4)
    ip = lab.get_json("svc", "sticky")[0]["spec"]["clusterIP"]
    seen = _hostnames(lab, f"http://{ip}/", 10)
    assert len(seen) == 1, seen


def test_scaling_down_moves_traffic_to_the_remaining_backends(lab: Lab, app: dict) -> None:
    lab.apply(APP.replace("replicas: 4", "replicas: 1"))
    _wait_backends(lab, "web", 1)
    remaining = {p["metadata"]["name"] for p in lab.get_json("pods") if p["metadata"]["name"].startswith("web-")}
    ip = lab.get_json("svc", "web")[0]["spec"]["clusterIP"]
    lab.wait_for(lambda: set(_hostnames(lab, f"http://{ip}:8080/", 6)) <= remaining, 20,
                 "traffic only to the remaining backend")


def test_pod_reaches_its_own_service(lab: Lab, app: dict) -> None:
    lab.apply("apiVersion: v1\nkind: Pod\nmetadata: {name: selfie, labels: {app: selfie}}\nspec:\n"
              "  containers: [{name: web, image: traefik/whoami, ports: [{containerPort: 80}]}]\n---\n"
              "apiVersion: v1\nkind: Service\nmetadata: {name: selfie}\nspec:\n  selector: {app: selfie}\n"
              "  ports: [{port: 80}]\n")
    lab.wait_pods_ready(["selfie"])
    _wait_backends(lab, "selfie", 1)
    ip = lab.get_json("svc", "selfie")[0]["spec"]["clusterIP"]
    out = lab.exec("selfie", "curl", "-s", "--max-time", "3", f"http://{ip}/").stdout
    assert "Hostname: selfie" in out
    selfie = lab.pod("selfie")
    kpr = lab.agent_status(selfie["spec"]["nodeName"])["kube-proxy-replacement"]
    if kpr["features"]["socketLB"]["enabled"]:  # connect() went straight to the pod's own address
        assert f"RemoteAddr: {selfie['status']['podIP']}:" in out
    else:  # per-packet hairpin: the pod sees the service's loopback as its client
        assert "RemoteAddr: 169.254.42.1:" in out
