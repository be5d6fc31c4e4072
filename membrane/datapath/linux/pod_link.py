"""A pod's interface with one rtnetlink socket per namespace: the work of ``links.create_pod_veth``
and ``links.configure_pod_side`` in one call.

Those two open six rtnetlink sockets and start three namespace-switching threads per pod (lookups,
MACs and "up" each on their own socket). At a pod burst the agent's ``veth`` stage was its largest
(issue 16). Here the pair is created with its peer already in the pod namespace and the host end is
set up and read on that same socket; then one thread in the pod namespace does everything inside it on
one socket. Any failure deletes the pair, so nothing is left behind. Each end is read back once (index
and MAC from one reply), the host end comes up at its creation and lo is set up by name. The requests
go through membrane.datapath.linux.rtnl, packed by hand: pyroute2's generic encoding and decoding of
them was most of the Python cost per pod.
"""

from __future__ import annotations

import errno
import ipaddress
import os

from membrane.datapath.linux.errors import NetError
from membrane.datapath.linux.links import VethInfo, _address, check_ifname, delete_link
from membrane.datapath.linux.netns import netns_path, run_in_netns
from membrane.datapath.linux.rtnl import RT_SCOPE_LINK, Rtnl, RtnlError
from membrane.model.errors import ValidationError


def _index_and_mac(rtnl: Rtnl, name: str, what: str) -> tuple[int, str]:
    """One RTM_GETLINK by name for both."""
    try:
        return rtnl.index_and_mac(name)
    except RtnlError as exc:
        if exc.errno == errno.ENODEV:
            raise NetError(errno.ENODEV, f"{what}: no device {name}") from None
        raise


def configure_inside(ifname: str, pod_ip: ipaddress.IPv4Address, router: ipaddress.IPv4Address) -> tuple[int, str]:
    """In the calling thread's namespace (the pod's): lo and ``ifname`` up, ``pod_ip``/32 on it, the
    router on-link and the default route via it. Returns the interface's (ifindex, MAC)."""
    try:
        with Rtnl() as rtnl:
            rtnl.link_up(name="lo")  # the kernel finds it by name: no lookup reply to decode
            index, mac = _index_and_mac(rtnl, ifname, "pod interface")
            rtnl.link_up(index=index)
            try:
                rtnl.add_address(index, str(pod_ip), 32)
            except RtnlError as exc:
                if exc.errno != errno.EEXIST:
                    raise
            rtnl.replace_route(str(router), 32, index, scope=RT_SCOPE_LINK)
            rtnl.replace_route("0.0.0.0", 0, index, gateway=str(router), onlink=True)
            return index, mac
    except RtnlError as exc:
        raise NetError(exc.errno or errno.EIO, f"configure pod interface {ifname}") from None


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
        try:
            with Rtnl() as rtnl:
                rtnl.add_veth(host_ifname, pod_ifname, fd, mtu)
                created = True
                host_index, host_mac = _index_and_mac(rtnl, host_ifname, "veth")
        except RtnlError as exc:
            raise NetError(exc.errno or errno.EIO, f"create veth {host_ifname} (peer {pod_ifname})") from None
        pod_index, pod_mac = run_in_netns(netns, configure_inside, pod_ifname, pod_ip, router)
    except BaseException:
        if created:
            delete_link(host_ifname)
        raise
    finally:
        os.close(fd)
    return VethInfo(host_ifindex=host_index, host_mac=host_mac, pod_mac=pod_mac, pod_ifindex=pod_index)
