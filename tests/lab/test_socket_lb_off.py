"""``socketLB.enabled=false``: no cgroup links, status says Disabled, and pods still reach a ClusterIP
through the per-packet load balancer (from_container's DNAT, CT_SERVICE entries); an upgrade to
``socketLB.enabled=true`` then attaches it for the pods already running."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from membrane.datapath.maps.conntrack import ConntrackMap
from membrane.datapath.maps.sock_lb import RevSkMap, SockNetnsMap
from membrane.lab.paths import BPFFS_ROOT
from tests.lab.conftest import make_lab
from tests.lab.harness import Lab
from tests.lab.test_socket_lb import APP, CT_SERVICE, NODES

pytestmark = pytest.mark.usefixtures("lab_requirements")


@pytest.fixture(scope="module")
def lab(lab_requirements: None) -> Iterator[Lab]:
    yield from make_lab("cilium", "cilium/cilium", "--set", "socketLB.enabled=false")


def test_per_packet_path_serves_clusterip_without_socket_lb(lab: Lab) -> None:
    lab.apply(APP)
    lab.wait_for(lambda: len([p for p in lab.get_json("pods") if p["metadata"]["name"].startswith("web-")]) == 2,
                 30, "2 web pods")
    lab.wait_pods_ready([p["metadata"]["name"] for p in lab.get_json("pods")], timeout=60)
    line = next(line for line in lab.run("status", "--node", "k8s-ctr", "--verbose").stdout.splitlines()
                if line.strip().startswith("Socket LB:"))
    assert line.split()[-1] == "Disabled", line
    for node in NODES:
        assert not os.path.exists(f"{BPFFS_ROOT}/{lab.name}/{node}/links")
    ip = lab.get_json("svc", "web")[0]["spec"]["clusterIP"]
    lab.wait_for(lambda: "Hostname: web-" in lab.exec("client", "curl", "-s", "--max-time", "2", f"http://{ip}:8080/",
                                                      check=False).stdout, 30, "web through its ClusterIP")
    with ConntrackMap.open(f"{BPFFS_ROOT}/{lab.name}/k8s-ctr") as ct:
        assert [r for r in ct.rows() if r.direction == CT_SERVICE and r.daddr == ip]


def test_an_upgrade_switches_the_socket_lb_on_for_running_pods(lab: Lab) -> None:
    lab.run("lab", "upgrade", "--reuse-values", "--set", "socketLB.enabled=true", timeout=400)

    def enabled() -> bool:
        kpr = lab.agent_status("k8s-ctr").get("kube-proxy-replacement") or {}
        return bool(kpr.get("features", {}).get("socketLB", {}).get("enabled"))
    lab.wait_for(enabled, 60, "the restarted agent to report the socket LB")
    for node in NODES:
        assert os.path.isdir(f"{BPFFS_ROOT}/{lab.name}/{node}/links")
    client_ip = lab.pod("client")["status"]["podIP"]
    with SockNetnsMap.open(f"{BPFFS_ROOT}/{lab.name}/k8s-ctr") as netns:
        assert client_ip in netns.items().values()  # a pod that existed before the upgrade
    ip = lab.get_json("svc", "web")[0]["spec"]["clusterIP"]
    assert "Hostname: web-" in lab.exec("client", "curl", "-s", "--max-time", "2", f"http://{ip}:8080/").stdout
    with RevSkMap.open(f"{BPFFS_ROOT}/{lab.name}/k8s-ctr") as rev:
        assert any(fe == ip for _c, _b, _p, fe, _fp in rev.items())
