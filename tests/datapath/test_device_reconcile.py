"""The host-device reconciler against the real kernel: the row attaches from/to-netdev to a device
of the node namespace with its settings, reads back as in place, and after ``tc filter del`` (a
program gone behind the agent's back) prune sees the drift and puts the program back."""

from __future__ import annotations

import socket
import subprocess

from membrane.datapath.device_ops import HostDeviceOps, HostDeviceRow
from membrane.datapath.linux.netns import run_in_netns
from membrane.datapath.maps.nat import HostSettings
from membrane.state.reconciler import DONE, Reconciler
from membrane.state.table import Table
from tests.datapath.netlab import NodeLab


def test_host_programs_are_attached_by_their_row_and_repaired_after_tc_filter_del(node: NodeLab) -> None:
    subprocess.run(["ip", "-n", node.netns, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"], check=True)
    subprocess.run(["ip", "-n", node.netns, "link", "set", "eth1", "up"], check=True)
    ifindex = run_in_netns(node.netns, socket.if_nametoindex, "eth1")
    settings = HostSettings("192.168.77.2", "10.0.0.0/8", masquerade=True, host_routing=False)
    table: Table[str, HostDeviceRow] = Table("host-device")
    ops = HostDeviceOps(lambda: node.datapath, table.items)
    rec = Reconciler(table, ops, name="bpf-host-device")
    table.upsert("eth1", HostDeviceRow(ifindex, settings))
    node.in_node(rec.run_once)
    assert rec.status("eth1").state == DONE
    row = table.get("eth1")
    assert row is not None
    assert node.datapath.host_config.read() == settings
    assert not node.in_node(ops.drifted, row)

    subprocess.run(["tc", "-n", node.netns, "filter", "del", "dev", "eth1", "egress"], check=True)
    assert node.in_node(node.datapath.host_attached, ifindex)["to_netdev"] is None
    assert node.in_node(ops.drifted, row)
    node.in_node(ops.prune, {"eth1"})
    attached = node.in_node(node.datapath.host_attached, ifindex)
    assert attached["to_netdev"] is not None and attached["from_netdev"] is not None
    assert not node.in_node(ops.drifted, row)
