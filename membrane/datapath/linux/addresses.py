"""This node's IPv4 addresses by device and its default-route device (rtnetlink), for the egress
gateway's choice of egress IP (membrane.egressgw.rows.LocalAddresses). Acts on the calling thread's
network namespace (the agent runs in its node's)."""

from __future__ import annotations

import socket

from membrane.datapath.linux.links import netlink


def device_addresses() -> dict[str, tuple[str, ...]]:
    """Device name -> its IPv4 addresses, primary first (the kernel's order)."""
    with netlink("list addresses") as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        out: dict[str, list[str]] = {}
        for addr in ipr.get_addr(family=socket.AF_INET):
            name = names.get(addr["index"])
            if name is not None:
                out.setdefault(name, []).append(addr.get_attr("IFA_ADDRESS"))
    return {name: tuple(ips) for name, ips in out.items()}


def default_route_device() -> str:
    """The device of the IPv4 default route in the main table, "" when there is none."""
    with netlink("list routes") as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for route in ipr.get_routes(family=socket.AF_INET, table=254):
            if route["dst_len"] == 0 and route.get_attr("RTA_OIF") is not None:
                return str(names.get(route.get_attr("RTA_OIF"), ""))
    return ""
