"""mb_tunnel and mb_ipmasq_v4 written by their reconcilers (ops against in-memory stand-ins of the
two LPM maps): rows go in one by one, a failing row does not keep the others out, and the prune
removes prefixes nobody asked for and repairs a tunnel entry pointing at the wrong node."""

from __future__ import annotations

import ipaddress

from membrane.datapath.maps.prefix_ops import IpMasqOps, TunnelOps, prefix_text
from membrane.state.reconciler import ERROR, Reconciler
from membrane.state.table import Table


class MemTunnel:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, str]] = {}
        self.refuse: set[str] = set()

    def update(self, prefix: str, node_ip: str, kind: str = "vxlan") -> None:
        if prefix in self.refuse:
            raise OSError(28, "no space left in map")
        self.rows[prefix] = (node_ip, kind)

    def delete(self, prefix: str) -> bool:
        return self.rows.pop(prefix, None) is not None

    def entries(self) -> dict[ipaddress.IPv4Network, tuple[ipaddress.IPv4Address, str]]:
        return {ipaddress.IPv4Network(p): (ipaddress.IPv4Address(ip), kind) for p, (ip, kind) in self.rows.items()}


class MemIpMasq:
    def __init__(self) -> None:
        self.rows: set[str] = set()

    def update(self, prefix: str) -> None:
        self.rows.add(prefix)

    def delete(self, prefix: str) -> bool:
        present = prefix in self.rows
        self.rows.discard(prefix)
        return present

    def prefixes(self) -> list[ipaddress.IPv4Network]:
        return sorted(ipaddress.IPv4Network(p) for p in self.rows)


def test_tunnel_rows_go_in_a_failing_one_alone_shows_error_and_the_prune_repairs_drift():
    target = MemTunnel()
    target.rows["10.0.9.0/24"] = ("192.168.10.109", "vxlan")  # a node that left
    target.refuse.add("10.0.3.0/24")
    table: Table[str, tuple[str, str]] = Table("tunnel", initialized=False)
    rec: Reconciler[str, tuple[str, str]] = Reconciler(table, TunnelOps(lambda: target, table.items),
                                                       prune_interval=None)
    table.replace_all({"10.0.2.0/24": ("192.168.10.102", "vxlan"), "10.0.3.0/24": ("192.168.10.103", "ipip")})
    table.mark_initialized()
    assert not rec.run_once()
    status = rec.status("10.0.3.0/24")
    assert status is not None and status.state == ERROR and "no space" in status.message
    assert target.rows == {"10.0.2.0/24": ("192.168.10.102", "vxlan")}  # and the departed node's CIDR is pruned
    target.rows["10.0.2.0/24"] = ("192.168.10.199", "vxlan")
    TunnelOps(lambda: target, table.items).prune(table.keys())
    assert target.rows == {"10.0.2.0/24": ("192.168.10.102", "vxlan")}
    target.rows["10.0.2.0/24"] = ("192.168.10.102", "ipip")  # the right node, the wrong encapsulation
    TunnelOps(lambda: target, table.items).prune(table.keys())
    assert target.rows == {"10.0.2.0/24": ("192.168.10.102", "vxlan")}


def test_ipmasq_rows_follow_the_table_and_the_prune_removes_the_rest():
    target = MemIpMasq()
    target.rows.add("198.51.100.0/24")
    table: Table[str, bool] = Table("ipmasq", initialized=False)
    rec: Reconciler[str, bool] = Reconciler(table, IpMasqOps(lambda: target), prune_interval=None)
    table.replace_all({prefix_text("10.0.0.0/8"): True, prefix_text("192.168.1.7/16"): True})
    table.mark_initialized()
    assert rec.run_once()
    assert target.rows == {"10.0.0.0/8", "192.168.0.0/16"}
    table.replace_all({"10.0.0.0/8": True})
    assert rec.run_once()
    assert target.rows == {"10.0.0.0/8"}
