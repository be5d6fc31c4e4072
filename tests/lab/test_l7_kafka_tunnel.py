"""Kafka L7 policy across nodes in tunnel routing (VXLAN over two subnets joined by a router that knows
no pod CIDR, the lab of test_l7_across_nodes): the broker on k8s-w1, the producer on k8s-w2, so every
Kafka request reaches k8s-w1's proxy through the overlay and its answers go back through the tunnel."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.lab.harness import Lab, unique_lab
from tests.lab.test_l7_kafka import APP, POLICY, produce

# test_l7_across_nodes' routed lab plus k8s-w2 (the producer's node) on the other subnet from k8s-w1
ROUTED = """
nodes:
  - {name: k8s-ctr, ip: 192.168.10.100/24, podCIDR: 10.244.0.0/24}
  - {name: k8s-w1, ip: 192.168.20.101/24, podCIDR: 10.244.1.0/24}
  - {name: k8s-w2, ip: 192.168.10.102/24, podCIDR: 10.244.2.0/24}
router: {name: router, ips: [192.168.10.200/24, 192.168.20.200/24]}
settings: {ipam.mode: kubernetes}
"""


@pytest.fixture(scope="module")
def tunnel_lab(lab_requirements: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if shutil.which("kcat") is None:
        pytest.skip("kcat (Debian package) not installed: make setup")
    lab = Lab(unique_lab())
    try:
        cfg = tmp_path_factory.mktemp("lab") / "lab.yaml"
        cfg.write_text(ROUTED)
        lab.create("--config", str(cfg), "--set", "routingMode=tunnel")
        lab.apply(APP)
        lab.wait_pods_ready(["kafka-broker", "empire-hq", "empire-outpost"], timeout=120)
        lab.apply(POLICY)
        yield lab
    finally:
        lab.delete()
        left = lab.leftovers()
        assert not left, f"lab delete left things behind: {left}"


def test_kafka_policy_applies_across_nodes_through_the_tunnel(tunnel_lab: Lab) -> None:
    rc, err = produce(tunnel_lab, "empire-hq", "empire-announce", "across the tunnel")
    assert rc == 0, err
    rc, err = produce(tunnel_lab, "empire-hq", "rebel-plans", "a trap")
    assert rc != 0 and "authorization failed" in err.lower(), err
    compact = tunnel_lab.run("observe", "--node", "k8s-w1", "--protocol", "kafka", "--last", "500").stdout
    assert "kafka-request DROPPED" in compact and "topic 'rebel-plans'" in compact, compact[-3000:]
    assert "kafka-request FORWARDED" in compact and "topic 'empire-announce'" in compact, compact[-3000:]
