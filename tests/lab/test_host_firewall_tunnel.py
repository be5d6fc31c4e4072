"""Host firewall with tunnel routing: a host policy enforcing both directions on every node leaves pod
traffic between nodes alone — it rides in VXLAN between the nodes' own addresses (UDP tunnelPort), which
the host endpoint keeps open between nodes — while the policy still filters the node's own port."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lab.conftest import make_lab
from tests.lab.harness import Lab
from tests.lab.test_host_firewall import CLOSED, OPEN, SERVE, W1, manifest, pod, reaches

pytestmark = pytest.mark.root

BOTH_WAYS = {
    "apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy", "metadata": {"name": "all-nodes"},
    "spec": {"nodeSelector": {},
             "ingress": [{"fromEntities": ["world"], "toPorts": [{"ports": [{"port": str(OPEN), "protocol": "TCP"}]}]}],
             "egress": [{"toEntities": ["world"], "toPorts": [{"ports": [{"port": str(OPEN), "protocol": "TCP"}]}]}]}}
SERVER = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "server", "labels": {"app": "server"}},
          "spec": {"nodeName": "k8s-w1", "containers": [{"name": "c", "image": "traefik/whoami"}]}}


@pytest.fixture(scope="module")
def lab(lab_requirements: None) -> Iterator[Lab]:
    yield from make_lab("--set", "hostFirewall.enabled=true", "--set", "routingMode=tunnel")


def test_pods_across_the_tunnel_keep_working_under_a_host_policy(lab: Lab) -> None:
    import subprocess

    listener = subprocess.Popen(["ip", "netns", "exec", lab.paths.node_netns("k8s-w1"), sys.executable, "-c", SERVE],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lab.apply(manifest(pod("client", "k8s-ctr", "client"), SERVER))
        pods: dict[str, Any] = lab.wait_pods_ready(["client", "server"])
        server = pods["server"]["status"]["podIP"]
        lab.wait_for(lambda: reaches(lab, "client", server, 80), 15, "pod to pod across the tunnel")
        lab.apply(manifest(BOTH_WAYS))
        lab.wait_for(lambda: not reaches(lab, "world", W1, CLOSED), 15, "the host policy in force")
        assert reaches(lab, "world", W1, OPEN)
        for _ in range(3):  # new connections each time: the tunnel stays open both ways
            assert reaches(lab, "client", server, 80)
        rows = json.loads(lab.run("endpoint", "list", "--node", "k8s-ctr", "-o", "json").stdout)
        assert next(r for r in rows if r["id"] == 4096)["status"]["policy"]["realized"]["policy-enabled"] == "both"
    finally:
        listener.kill()  # only the listener this test started
        listener.wait(timeout=5)
