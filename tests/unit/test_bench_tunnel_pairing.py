"""The datapath benchmark's kernel-VXLAN pairing: when it is built, how its rows are named and paired."""

from __future__ import annotations

from dataclasses import dataclass

from bench.goals import GOALS, evaluate
from bench.kernelnet import node_setup
from bench.tunnel_pairing import TUNNEL_BASELINE, TunnelRows, kernel_tunnel_wanted

METRICS = (("TCP 1 stream", "Gbit/s", "gbits"), ("TCP_RR", "req/s", "rr"), ("TCP_CRR", "conn/s", "crr"))
LABELS = {"open": "Membrane, no policy [VXLAN tunnel]", "policy": "Membrane, policy + 1k [VXLAN tunnel]",
          "iptables": "iptables, 1k FORWARD rules"}


@dataclass
class S:
    gbits: float
    rr: float
    crr: float


def test_kernel_tunnel_only_for_settings_that_put_every_cross_node_packet_in_vxlan():
    assert kernel_tunnel_wanted(["routingMode=tunnel"])
    assert kernel_tunnel_wanted(["routingMode=tunnel", "tunnelProtocol=vxlan"])
    assert kernel_tunnel_wanted(["encapsulation.mode=Always"])
    assert kernel_tunnel_wanted(["encapsulation.mode=Always", "encapsulation.type=vxlan"])
    assert not kernel_tunnel_wanted([])
    assert not kernel_tunnel_wanted(["routingMode=native"])
    assert not kernel_tunnel_wanted(["encapsulation.mode=Always", "encapsulation.type=ipip"])
    assert not kernel_tunnel_wanted(["encapsulation.mode=CrossSubnet"])
    assert not kernel_tunnel_wanted(["bpf.hostLegacyRouting=true"])


def test_rows_are_named_after_the_variant_and_carry_the_kernel_tunnel_baseline():
    rows = TunnelRows("datapath pod→pod", LABELS, METRICS)
    metrics = sorted(m.metric for m in rows.measurements())
    assert metrics == sorted(f"{metric} across nodes, {LABELS[v]}" for v in ("open", "policy")
                             for metric, _, _ in METRICS)
    assert {m.baseline_name for m in rows.measurements()} == {TUNNEL_BASELINE}
    assert {m.unit for m in rows.measurements()} == {"Gbit/s", "req/s", "conn/s"}


def test_samples_pair_with_the_kernel_tunnel_sample_of_their_run_across_nodes_only():
    rows = TunnelRows("datapath pod→pod", LABELS, METRICS)
    rows.add("open", "across nodes", S(2.0, 9000, 900), S(4.0, 10000, 1000))
    rows.add("open", "across nodes", S(3.0, 8000, 800), S(3.0, 10000, 1000))
    rows.add("open", "same node", S(9.0, 1, 1), S(1.0, 1, 1))  # no tunnel on the same node
    rows.add("iptables", "across nodes", S(9.0, 1, 1), S(1.0, 1, 1))  # not one of the paired variants
    rows.add("policy", "across nodes", S(9.0, 1, 1), None)  # no kernel tunnel in this run
    by = {m.metric: m for m in rows.measurements()}
    gbits = by[f"TCP 1 stream across nodes, {LABELS['open']}"]
    assert gbits.ratios() == [0.5, 1.0]
    assert by[f"TCP_RR across nodes, {LABELS['open']}"].ratios() == [0.9, 0.8]
    assert all(not by[f"{metric} across nodes, {LABELS['policy']}"].subject for metric, _, _ in METRICS)


def test_the_kernel_tunnel_goals_read_these_rows_and_not_the_kernel_routing_ones():
    rows = TunnelRows("datapath pod→pod (2 nodes, cpu-pinned)", LABELS, METRICS)
    rows.add("open", "across nodes", S(1.0, 5000, 500), S(2.0, 10000, 1000))
    goals = [g for g in GOALS if g.baseline == "kernel VXLAN tunnel"]
    assert len(goals) == 2
    results = evaluate(rows.measurements(), goals=goals)
    assert [r.status for r in results] == ["MISSED", "MISSED"]
    assert all(len(r.checks) == 1 and r.checks[0].value == 0.5 for r in results)
    routing_goals = [g for g in GOALS if g.baseline == "kernel routing" and "VXLAN tunnel" in g.what]
    assert routing_goals and all(r.status == "not measured" for r in evaluate(rows.measurements(),
                                                                             goals=routing_goals))


def test_node_setup_routes_through_vxlan0_only_for_the_tunnel():
    plain = node_setup(1, 77, tunnel=False)
    assert "route add 10.77.2.0/24 via 192.0.2.2 dev eth1" in plain and "vxlan" not in plain
    tunnel = node_setup(2, 80, tunnel=True)
    assert "link add vxlan0 type vxlan id 1 local 192.0.2.2 remote 192.0.2.1 dstport 8472 dev eth1" in tunnel
    assert "route add 10.80.1.0/24 via 10.80.1.1 dev vxlan0 onlink" in tunnel
    assert "dev eth1\nroute" not in tunnel  # the other node's pods are not reachable unencapsulated
