"""Network devices through rtnetlink: pod veths, dummies, bridges, addresses, link state.

Every function acts on the calling thread's network namespace, or on ``netns`` (a name under
/run/netns or a path) when given. Names and addresses are validated before anything is changed.
"""

from __future__ import annotations

import errno
import ipaddress
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from membrane.datapath.linux.errors import NetError
from membrane.datapath.linux.netns import in_netns, netns_path, run_in_netns
from membrane.model.errors import ValidationError

T = TypeVar("T")
IFNAMSIZ = 16  # including the NUL: names are at most 15 characters


@dataclass(frozen=True)
class VethInfo:
    """Both ends of a pod veth: host side in the node netns, pod side in the pod netns."""

    host_ifindex: int
    host_mac: str
    pod_mac: str
    pod_ifindex: int


def check_ifname(name: str, what: str = "interface name") -> str:
    if (
        not isinstance(name, str)
        or not 0 < len(name) < IFNAMSIZ
        or name in (".", "..")
        or any(c in name for c in "/: \t\n\0")
    ):
        raise ValidationError(f"{what} {name!r}: must be 1-15 characters without '/', ':' or spaces")
    return name


def _interface(cidr: str, what: str) -> ipaddress.IPv4Interface:
    try:
        if "/" not in cidr:
            raise ValueError("a prefix length is required (e.g. 10.0.0.1/32)")
        return ipaddress.IPv4Interface(cidr)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{what} {cidr!r}: {exc}") from None


def _address(ip: str, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(ip)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{what} {ip!r}: {exc}") from None


@contextmanager
def netlink(what: str) -> Iterator[IPRoute]:
    """An rtnetlink socket in this thread's namespace; netlink errors become NetError(what)."""
    try:
        with IPRoute() as ipr:
            yield ipr
    except NetlinkError as exc:
        raise NetError(exc.code, what) from None


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _require(ipr: IPRoute, name: str, what: str) -> int:
    index = _index(ipr, name)
    if index is None:
        raise NetError(errno.ENODEV, f"{what}: no device {name}")
    return index


def _mac(ipr: IPRoute, index: int) -> str:
    return ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")


def _ignore(codes: tuple[int, ...], fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    try:
        return fn(*args, **kwargs)
    except NetlinkError as exc:
        if exc.code in codes:
            return None
        raise


# ---- queries -----------------------------------------------------------------------------------


def link_index(name: str, netns: str | None = None) -> int | None:
    """ifindex of a device, or None if there is none by that name."""
    check_ifname(name)

    def query() -> int | None:
        with netlink(f"look up {name}") as ipr:
            return _index(ipr, name)

    return in_netns(netns, query)


def link_exists(name: str, netns: str | None = None) -> bool:
    return link_index(name, netns) is not None


def link_mac(name: str, netns: str | None = None) -> str:
    check_ifname(name)

    def query() -> str:
        with netlink(f"MAC of {name}") as ipr:
            return _mac(ipr, _require(ipr, name, "MAC"))

    return in_netns(netns, query)


# ---- changes -----------------------------------------------------------------------------------


def set_up(name: str, netns: str | None = None) -> None:
    check_ifname(name)

    def change() -> None:
        with netlink(f"set {name} up") as ipr:
            ipr.link("set", index=_require(ipr, name, "set up"), state="up")

    in_netns(netns, change)


def set_master(name: str, master: str, netns: str | None = None) -> None:
    """Enslave a device to a bridge (or other master) in the same namespace."""
    check_ifname(name)
    check_ifname(master, "master")

    def change() -> None:
        with netlink(f"set master of {name} to {master}") as ipr:
            index = _require(ipr, name, "set master")
            ipr.link("set", index=index, master=_require(ipr, master, "set master"))

    in_netns(netns, change)


def add_address(name: str, cidr: str, netns: str | None = None) -> None:
    """Add ``cidr`` (e.g. ``192.168.10.2/24``) to a device; present already is fine."""
    check_ifname(name)
    iface = _interface(cidr, f"address for {name}")

    def change() -> None:
        with netlink(f"add {cidr} to {name}") as ipr:
            index = _require(ipr, name, f"add {cidr}")
            _ignore((errno.EEXIST,), ipr.addr, "add", index=index, address=str(iface.ip),
                    prefixlen=iface.network.prefixlen)

    in_netns(netns, change)


def delete_link(name: str, netns: str | None = None) -> bool:
    """Delete a device (a veth takes its peer with it); False if it did not exist."""
    check_ifname(name)

    def change() -> bool:
        with netlink(f"delete {name}") as ipr:
            index = _index(ipr, name)
            if index is None:
                return False
            return _ignore((errno.ENODEV,), ipr.link, "del", index=index) is not None

    return in_netns(netns, change)


def _fallback_peer(name: str) -> str:
    if name.endswith("_host"):
        return name[: -len("_host")] + "_net"  # membrane_host -> membrane_net, like cilium_host/_net
    return name[:12] + "_nt"


def ensure_dummy(name: str, cidr: str, netns: str | None = None) -> int:
    """A device holding ``cidr`` that is always up and carries no traffic of its own (created if
    missing); returns its ifindex. A dummy device where the kernel has them; kernels built
    without CONFIG_DUMMY get a veth pair ``name`` + ``<name minus _host>_net`` instead (Cilium's
    cilium_host/cilium_net shape), which behaves the same for local addresses."""
    check_ifname(name)
    _interface(cidr, f"address for {name}")

    def change() -> int:
        with netlink(f"create dummy {name}") as ipr:
            if _index(ipr, name) is None:
                try:
                    _ignore((errno.EEXIST,), ipr.link, "add", ifname=name, kind="dummy")
                except NetlinkError as exc:
                    if exc.code != errno.EOPNOTSUPP:
                        raise
                    peer = _fallback_peer(name)
                    ipr.link("add", ifname=name, kind="veth", peer={"ifname": peer})
                    ipr.link("set", index=_require(ipr, peer, "dummy peer"), state="up")
            index = _require(ipr, name, "dummy")
        add_address(name, cidr)
        set_up(name)
        return index

    return in_netns(netns, change)


def ensure_vxlan(name: str, port: int, netns: str | None = None) -> int:
    """A collect-metadata ("external") VXLAN device on UDP ``port`` (created if missing, up);
    returns its ifindex. BPF sets each packet's remote and VNI (bpf_skb_set_tunnel_key)."""
    check_ifname(name)
    if not 1 <= port <= 65535:
        raise ValidationError(f"vxlan {name!r}: port {port} is not in 1..65535")

    def change() -> int:
        with netlink(f"create vxlan {name}") as ipr:
            if _index(ipr, name) is None:
                ipr.link("add", ifname=name, kind="vxlan", vxlan_collect_metadata=1, vxlan_port=port,
                         vxlan_learning=0)
            index = _require(ipr, name, "vxlan")
            ipr.link("set", index=index, state="up")
            return index

    return in_netns(netns, change)


def create_bridge(name: str, netns: str | None = None, up: bool = True) -> int:
    """A Linux bridge (created if missing); returns its ifindex."""
    check_ifname(name)

    def change() -> int:
        with netlink(f"create bridge {name}") as ipr:
            if _index(ipr, name) is None:
                ipr.link("add", ifname=name, kind="bridge")
            index = _require(ipr, name, "bridge")
            if up:
                ipr.link("set", index=index, state="up")
            return index

    return in_netns(netns, change)


def create_veth_pair(
    name_a: str, name_b: str, netns_a: str | None = None, netns_b: str | None = None, mtu: int = 1500, up: bool = True
) -> tuple[int, int]:
    """A veth pair with end ``name_a`` in ``netns_a`` and ``name_b`` in ``netns_b`` (None: the
    calling thread's namespace); returns both ifindexes. Nothing is left behind on failure."""
    check_ifname(name_a)
    check_ifname(name_b, "peer name")
    if not 68 <= mtu <= 65535:
        raise ValidationError(f"veth {name_a}: mtu {mtu} must be between 68 and 65535")
    b_fd = None
    if netns_b is not None:
        b_fd = os.open(netns_path(netns_b), os.O_RDONLY | os.O_CLOEXEC)
    elif netns_a is not None:  # the peer stays in the caller's namespace, not netns_a
        b_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    def create() -> int:
        peer: dict[str, Any] = {"ifname": name_b, "mtu": mtu}
        if b_fd is not None:
            peer["net_ns_fd"] = b_fd
        with netlink(f"create veth {name_a} (peer {name_b})") as ipr:
            ipr.link("add", ifname=name_a, kind="veth", mtu=mtu, peer=peer)
            index = _require(ipr, name_a, "veth")
            if up:
                ipr.link("set", index=index, state="up")
            return index

    try:
        index_a = in_netns(netns_a, create)
    finally:
        if b_fd is not None:
            os.close(b_fd)
    try:
        index_b = link_index(name_b, netns_b)
        if index_b is None:
            raise NetError(errno.ENODEV, f"create veth {name_a}: peer {name_b} did not appear")
        if up:
            set_up(name_b, netns_b)
    except BaseException:
        delete_link(name_a, netns_a)
        raise
    return index_a, index_b


# ---- pods --------------------------------------------------------------------------------------


def create_pod_veth(host_ifname: str, netns_path_or_name: str, pod_ifname: str = "eth0", mtu: int = 1500) -> VethInfo:
    """The pod's veth: ``host_ifname`` (up) here, ``pod_ifname`` (down) in the pod namespace.

    The peer is created directly inside the pod namespace under its final name, in the same
    netlink request as the host side, so a clash (e.g. the pod has an eth0 already) leaves
    nothing behind; any later failure deletes the pair.
    """
    host_index, pod_index = create_veth_pair(host_ifname, pod_ifname, None, netns_path_or_name, mtu, up=False)
    try:
        set_up(host_ifname)
        host_mac = link_mac(host_ifname)
        pod_mac = link_mac(pod_ifname, netns_path_or_name)
    except BaseException:
        delete_link(host_ifname)
        raise
    return VethInfo(host_ifindex=host_index, host_mac=host_mac, pod_mac=pod_mac, pod_ifindex=pod_index)


def configure_pod_side(netns_path_or_name: str, ifname: str, ip: str, router_ip: str) -> None:
    """Inside the pod: lo and ``ifname`` up, ``ip``/32 on it, the router IP on-link and the default
    route via the router IP (Cilium's pod routing: every packet goes to the host-side veth)."""
    check_ifname(ifname)
    pod_ip = _address(ip, f"pod address on {ifname}")
    router = _address(router_ip, "router IP")

    def configure() -> None:
        with netlink(f"configure pod interface {ifname}") as ipr:
            ipr.link("set", index=_require(ipr, "lo", "pod loopback"), state="up")
            index = _require(ipr, ifname, "pod interface")
            ipr.link("set", index=index, state="up")
            _ignore((errno.EEXIST,), ipr.addr, "add", index=index, address=str(pod_ip), prefixlen=32)
            ipr.route("replace", dst=f"{router}/32", oif=index, scope="link")
            ipr.route("replace", dst="0.0.0.0/0", gateway=str(router), oif=index, flags=["onlink"])

    run_in_netns(netns_path_or_name, configure)
