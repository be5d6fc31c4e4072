"""Other lab shapes: two subnets behind a router with kubernetes IPAM; crashes; bad settings."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

from membrane.lab.processes import pids_in_netns
from tests.lab.conftest import make_lab
from tests.lab.harness import Lab, unique_lab

ROUTED = """
nodes:
  - {name: k8s-ctr, ip: 192.168.10.100/24, podCIDR: 10.244.0.0/24}
  - {name: k8s-w1, ip: 192.168.20.101/24, podCIDR: 10.244.1.0/24}
router: {name: router, ips: [192.168.10.200/24, 192.168.20.200/24]}
settings: {ipam.mode: kubernetes}
"""


@pytest.fixture(scope="module")
def routed_lab(lab_requirements: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    cfg = tmp_path_factory.mktemp("lab") / "lab.yaml"
    cfg.write_text(ROUTED)
    yield from make_lab("--config", str(cfg))


def test_pods_across_a_router_with_kubernetes_ipam(routed_lab: Lab) -> None:
    nodes = {n["metadata"]["name"]: n for n in routed_lab.get_json("nodes")}
    assert nodes["k8s-w1"]["spec"]["podCIDR"] == "10.244.1.0/24"  # from the lab config, not the operator
    routed_lab.apply("""
apiVersion: v1
kind: Pod
metadata: {name: two-containers}
spec:
  nodeName: k8s-w1
  containers:
    - {name: web, image: nginx, ports: [{containerPort: 80, name: http}]}
    - {name: echo, image: registry.k8s.io/e2e-test-images/agnhost:2.52, args: [netexec, --http-port=8080],
       ports: [{containerPort: 8080, name: netexec}]}
---
apiVersion: v1
kind: Pod
metadata: {name: far-client}
spec:
  nodeName: k8s-ctr
  containers: [{name: c, image: curlimages/curl}]
""")
    pods = routed_lab.wait_pods_ready(["two-containers", "far-client"])
    ip = pods["two-containers"]["status"]["podIP"]
    assert ip.startswith("10.244.1.")
    assert "nginx" in routed_lab.exec("far-client", "curl", "-sI", "--max-time", "5", f"http://{ip}/").stdout
    client_ip = pods["far-client"]["status"]["podIP"]
    seen = routed_lab.exec("far-client", "curl", "-s", "--max-time", "5", f"http://{ip}:8080/clientip").stdout
    assert seen.rsplit(":", 1)[0] == client_ip  # routed, not NATed
    assert "two-containers" in routed_lab.exec("far-client", "curl", "-s", f"http://{ip}:8080/hostname").stdout


def test_unknown_image_is_a_pod_status_not_a_crash(routed_lab: Lab) -> None:
    routed_lab.apply("apiVersion: v1\nkind: Pod\nmetadata: {name: no-such-image}\n"
                     "spec:\n  containers: [{name: c, image: example.org/no/such:1.0}]\n")
    def errimage() -> bool:
        st = routed_lab.pod("no-such-image").get("status", {})
        return any(c.get("state", {}).get("waiting", {}).get("reason") == "ErrImagePull"
                   for c in st.get("containerStatuses", []))
    routed_lab.wait_for(errimage, 30, "ErrImagePull")
    assert "ErrImagePull" in routed_lab.run("get", "pods").stdout
    routed_lab.run("delete", "pod", "no-such-image")


def test_lab_addresses_never_reach_the_host_routing_table(routed_lab: Lab) -> None:
    routes = subprocess.run(["ip", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    for prefix in ("192.168.10.", "192.168.20.", "10.244."):
        assert prefix not in routes


def test_overlapping_pod_cidr_is_refused_naming_both(lab_requirements: None) -> None:
    lab = Lab(unique_lab())
    proc = lab.run("lab", "create", "--set", "clusterPoolIPv4PodCIDRList=192.168.0.0/16", check=False)
    assert proc.returncode != 0
    assert "192.168.0.0/16" in proc.stderr and "192.168.10.0/24" in proc.stderr
    assert not lab.leftovers()


def test_delete_after_a_crash_leaves_nothing(lab_requirements: None) -> None:
    lab = Lab(unique_lab())
    try:
        lab.create("--nodes", "2")
        lab.apply("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: busybox}]\n")
        lab.wait_pods_ready(["p"])
        # Crash: every daemon and workload killed at once, and the lab's own record lost.
        nss = [f"/run/netns/{n}" for n in os.listdir("/run/netns") if n.startswith(lab.paths.netns_prefix)]
        for pid in pids_in_netns(nss):
            os.kill(pid, signal.SIGKILL)
        os.unlink(lab.paths.state_file)
    finally:
        lab.delete()
    assert not lab.leftovers()
