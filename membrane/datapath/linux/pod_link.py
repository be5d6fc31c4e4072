"""A pod's interface with one rtnetlink socket per namespace: the work of ``links.create_pod_veth``
and ``links.configure_pod_side`` in one call.

Those two open six rtnetlink sockets and start three namespace-switching threads per pod (lookups,
MACs and "up" each on their own socket). At a pod burst the agent's ``veth`` stage was its largest
(issue 16). Here the pair is created with its peer already in the pod namespace and the host end is
set up and read on that same socket; then one thread in the pod namespace does everything inside it on
one socket. Any failure deletes the pair, so nothing is left behind. Each end is read back once (index
and MAC from one reply), the host end comes up at its creation and lo is set up by name: decoding link
replies was most of the Python cost per pod.
"""

from __future__ import annotations

import errno
import ipaddress
import os

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from membrane.datapath.linux.errors import NetError
from membrane.datapath.linux.links import (
    VethInfo,
    _address,
    _ignore,
    check_ifname,
    delete_link,
    netlink,
)
from membrane.datapath.linux.netns import netns_path, run_in_netns
from membrane.model.errors import ValidationError


def _index_and_mac(ipr: IPRoute, name: str, what: str) -> tuple[int, str]:
    """One RTM_GETLINK by name for both (decoding a link reply is most of a request's Python cost)."""
    try:
        msg = ipr.link("get", ifname=name)[0]
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            raise NetError(errno.ENODEV, f"{what}: no device {name}") from None
        raise
    return msg["index"], msg.get_attr("IFLA_ADDRESS")


def configure_inside(ifname: str, pod_ip: ipaddress.IPv4Address, router: ipaddress.IPv4Address) -> tuple[int, str]:
    """In the calling thread's namespace (the pod's): lo and ``ifname`` up, ``pod_ip``/32 on it, the
    router on-link and the default route via it. Returns the interface's (ifindex, MAC)."""
    with netlink(f"configure pod interface {ifname}") as ipr:
        ipr.link("set", ifname="lo", state="up")  # the kernel finds it by name: no lookup reply to decode
        index, mac = _index_and_mac(ipr, ifname, "pod interface")
        ipr.link("set", index=index, state="up")
        _ignore((errno.EEXIST,), ipr.addr, "add", index=index, address=str(pod_ip), prefixlen=32)
        ipr.route("replace", dst=f"{router}/32", oif=index, scope="link")
        ipr.route("replace", dst="0.0.0.0/0", gateway=str(router), oif=index, flags=["onlink"])
        return index, mac


def create_pod_interface(host_ifname: str, netns: str, pod_ifname: str, ip: str, router_ip: str,
                         mtu: int = 1500) -> VethInfo:
    """``host_ifname`` (up) in the calling thread's namespace, ``pod_ifname`` in ``netns`` (a name or a
    path) configured as ``links.configure_pod_side`` does. A clash (the pod has ``pod_ifname`` already)
    fails the creation itself; a later failure deletes the pair."""
    check_ifname(host_ifname)
    check_ifname(pod_ifname, "peer name")
    if not 68 <= mtu <= 65535:
        raise ValidationError(f"veth {host_ifname}: mtu {mtu} must be between 68 and 65535")
    pod_ip = _address(ip, f"pod address on {pod_ifname}")
    router = _address(router_ip, "router IP")
    fd = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
    created = False
    try:
        with netlink(f"create veth {host_ifname} (peer {pod_ifname})") as ipr:
            ipr.link("add", ifname=host_ifname, kind="veth", mtu=mtu, state="up",
                     peer={"ifname": pod_ifname, "mtu": mtu, "net_ns_fd": fd})
            created = True
            host_index, host_mac = _index_and_mac(ipr, host_ifname, "veth")
        pod_index, pod_mac = run_in_netns(netns, configure_inside, pod_ifname, pod_ip, router)
    except BaseException:
        if created:
            delete_link(host_ifname)
        raise
    finally:
        os.close(fd)
    return VethInfo(host_ifindex=host_index, host_mac=host_mac, pod_mac=pod_mac, pod_ifindex=pod_index)
