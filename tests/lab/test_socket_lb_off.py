"""``socketLB.enabled=false``: no cgroup links, status says Disabled, and pods still reach a ClusterIP
through the per-packet load balancer (from_container's DNAT, CT_SERVICE entries)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from membrane.datapath.maps.conntrack import ConntrackMap
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
