"""bench.dpprofile's pure parts: naming the attached programs, BPF time per transaction from two snapshots."""

from __future__ import annotations

from bench.dpprofile import per_transaction, tc_programs

NET_SHOW = [{"xdp": [], "tc": [
    {"devname": "eth1", "ifindex": 2, "kind": "clsact/ingress", "name": "from_netdev:[39088]", "id": 39088},
    {"devname": "eth1", "ifindex": 2, "kind": "clsact/egress", "name": "to_netdev:[39090]", "id": 39090},
    {"devname": "lxc8720e011b38", "ifindex": 5, "kind": "clsact/ingress", "name": "from_container:[39079]",
     "id": 39079},
    {"devname": "lxc1111aaaa2222", "ifindex": 7, "kind": "clsact/ingress", "name": "from_container:[39100]",
     "id": 39100},
], "flow_dissector": []}]


def test_programs_are_named_by_program_device_and_direction_with_every_pod_veth_as_lxc():
    assert tc_programs(NET_SHOW) == {
        39088: "from_netdev@eth1/ingress",
        39090: "to_netdev@eth1/egress",
        39079: "from_container@lxc/ingress",
        39100: "from_container@lxc/ingress",
    }
    assert tc_programs([{"xdp": [], "flow_dissector": []}]) == {}


def test_time_per_transaction_sums_the_programs_of_a_label_and_leaves_out_those_that_did_not_run():
    progs = tc_programs(NET_SHOW)
    before = {39088: (10, 5_000), 39090: (3, 900), 39079: (100, 80_000), 39100: (50, 40_000)}
    after = {39088: (20, 15_000), 39090: (3, 900), 39079: (140, 120_000), 39100: (90, 80_000)}
    got = per_transaction(progs, before, after, transactions=10)
    assert got == {"from_netdev@eth1/ingress": (1_000.0, 1.0), "from_container@lxc/ingress": (8_000.0, 8.0)}


def test_a_program_missing_from_a_snapshot_is_not_counted_and_zero_transactions_do_not_divide_by_zero():
    progs = tc_programs(NET_SHOW)
    got = per_transaction(progs, {39088: (0, 0)}, {39088: (4, 400), 39090: (9, 9_000)}, transactions=0)
    assert got == {"from_netdev@eth1/ingress": (400.0, 4.0)}
