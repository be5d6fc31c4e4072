"""pyroute2 adapters: namespaces, links, routes and sysctls, in throwaway namespaces."""

from __future__ import annotations

import errno
import json
import subprocess
from collections.abc import Callable

import pytest

from membrane.datapath.linux import links, routes, sysctl
from membrane.datapath.linux.errors import NetError
from membrane.datapath.linux.netns import (
    create_netns,
    delete_netns,
    list_netns,
    netns_exists,
    netns_path,
    run_in_netns,
)
from membrane.model.errors import ValidationError

pytestmark = pytest.mark.root


def ip_json(netns: str, *args: str) -> list[dict]:
    out = subprocess.run(["ip", "-j", "-n", netns, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout or "[]")


def test_netns_lifecycle(run_id: str) -> None:
    name = f"dpt-{run_id}-ns"
    try:
        assert create_netns(name) == f"/run/netns/{name}"
        assert netns_exists(name) and name in list_netns()
        with pytest.raises(NetError) as err:
            create_netns(name)
        assert err.value.errno == errno.EEXIST
    finally:
        assert delete_netns(name) is True
    assert not netns_exists(name) and name not in list_netns()
    assert delete_netns(name) is False


@pytest.mark.parametrize("bad", ["", "a/b", "..", "x" * 256])
def test_netns_names_are_checked(bad: str) -> None:
    with pytest.raises(ValidationError, match="network namespace name"):
        create_netns(bad)


def test_run_in_netns_returns_and_raises_and_leaves_the_caller_alone(make_netns: Callable[[str], str]) -> None:
    ns = make_netns("a")

    def inode() -> int:
        import os

        return os.stat("/proc/thread-self/ns/net").st_ino

    import os

    own = inode()
    assert run_in_netns(ns, inode) == os.stat(netns_path(ns)).st_ino != own
    assert inode() == own

    def boom() -> None:
        raise KeyError("inside")

    with pytest.raises(KeyError, match="inside"):
        run_in_netns(ns, boom)
    with pytest.raises(NetError) as err:
        run_in_netns(f"{ns}-missing", inode)
    assert err.value.errno == errno.ENOENT


def test_pod_veth_and_pod_side(make_netns: Callable[[str], str]) -> None:
    node, pod = make_netns("node"), make_netns("pod")
    info = run_in_netns(node, links.create_pod_veth, "lxctest1", pod, "eth0", 1400)
    assert links.link_index("lxctest1", node) == info.host_ifindex
    assert links.link_mac("lxctest1", node) == info.host_mac
    assert links.link_mac("eth0", pod) == info.pod_mac
    assert not links.link_exists("lxctest1")  # nothing in the test's own namespace

    links.configure_pod_side(pod, "eth0", "10.200.0.10", "10.200.0.1")
    links.configure_pod_side(pod, "eth0", "10.200.0.10", "10.200.0.1")  # idempotent
    (eth0,) = ip_json(pod, "addr", "show", "dev", "eth0")
    assert eth0["mtu"] == 1400 and "UP" in eth0["flags"]
    assert [(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a["family"] == "inet"] == [("10.200.0.10", 32)]
    table = {(r["dst"], r.get("gateway"), r.get("scope")): r for r in ip_json(pod, "route", "show")}
    assert ("10.200.0.1", None, "link") in table
    assert "onlink" in table[("default", "10.200.0.1", None)]["flags"]

    assert links.delete_link("lxctest1", node) is True
    assert not links.link_exists("eth0", pod)  # the peer went with it
    assert links.delete_link("lxctest1", node) is False


def test_a_failed_pod_veth_leaves_nothing(make_netns: Callable[[str], str]) -> None:
    node, pod = make_netns("node"), make_netns("pod")
    run_in_netns(node, links.create_pod_veth, "lxcfirst", pod)
    with pytest.raises(NetError) as err:  # the pod has an eth0 already
        run_in_netns(node, links.create_pod_veth, "lxcsecond", pod)
    assert err.value.errno == errno.EEXIST
    assert not links.link_exists("lxcsecond", node)


@pytest.mark.parametrize("bad", ["", "a" * 16, "a/b", "a b"])
def test_interface_names_are_checked(bad: str) -> None:
    with pytest.raises(ValidationError, match="interface name"):
        links.link_index(bad)


def test_bad_addresses_change_nothing(make_netns: Callable[[str], str]) -> None:
    node, pod = make_netns("node"), make_netns("pod")
    run_in_netns(node, links.create_pod_veth, "lxcbad", pod)
    with pytest.raises(ValidationError, match="router IP '10.0.0.300'"):
        links.configure_pod_side(pod, "eth0", "10.200.0.10", "10.0.0.300")
    with pytest.raises(ValidationError, match="a prefix length is required"):
        links.add_address("lxcbad", "10.0.0.1", node)
    (eth0,) = ip_json(pod, "addr", "show", "dev", "eth0")
    assert [a for a in eth0["addr_info"] if a["family"] == "inet"] == []
    assert links.link_index("lxcbad", node) is not None  # and the veth is still there


def test_underlay_helpers_connect_two_nodes(make_netns: Callable[[str], str]) -> None:
    """The lab's shape: a bridge in an underlay netns, one veth per node into it as eth1."""
    underlay, n1, n2 = make_netns("underlay"), make_netns("n1"), make_netns("n2")
    links.create_bridge("br0", underlay)
    for i, node in enumerate((n1, n2), start=1):
        a, b = links.create_veth_pair(f"n{i}", "eth1", underlay, node)
        assert links.link_index(f"n{i}", underlay) == a and links.link_index("eth1", node) == b
        links.set_master(f"n{i}", "br0", underlay)
        links.add_address("eth1", f"192.168.77.{i}/24", node)
        links.add_address("eth1", f"192.168.77.{i}/24", node)  # present already: fine
    assert links.ensure_dummy("membrane_host", "10.200.1.1/32", n1) == links.ensure_dummy(
        "membrane_host", "10.200.1.1/32", n1)
    routes.replace_gateway_route("10.200.1.0/24", "192.168.77.1", dev="eth1", netns=n2)
    result = subprocess.run(["ip", "netns", "exec", n2, "ping", "-c", "1", "-W", "2", "10.200.1.1"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_routes_touch_only_ours(make_netns: Callable[[str], str]) -> None:
    node, pod = make_netns("node"), make_netns("pod")
    run_in_netns(node, links.create_pod_veth, "lxcr", pod)
    links.set_up("lo", node)  # an onlink gateway is checked against the local table: it must exist
    subprocess.run(["ip", "-n", node, "route", "add", "10.9.9.0/24", "dev", "lxcr", "proto", "static"], check=True)

    routes.replace_endpoint_route("10.200.0.10", "lxcr", netns=node)
    routes.replace_route("10.200.5.0/24", gateway="10.200.0.10", dev="lxcr", onlink=True, netns=node)
    assert routes.list_routes(node) == [
        routes.Route("10.200.0.10/32", None, "lxcr", "link", False),
        routes.Route("10.200.5.0/24", "10.200.0.10", "lxcr", "universe", True),
    ]
    # the node routes only, their devices named without a dump of every link (issue 16)
    assert routes.list_routes(node, gateway_only=True) == [
        routes.Route("10.200.5.0/24", "10.200.0.10", "lxcr", "universe", True)]
    assert routes.route_exists("10.200.0.10", dev="lxcr", netns=node)
    assert not routes.route_exists("10.9.9.0/24", netns=node)  # not ours

    assert routes.prune_routes(["10.200.0.10/32"], netns=node) == [
        routes.Route("10.200.5.0/24", "10.200.0.10", "lxcr", "universe", True)
    ]
    assert routes.delete_route("10.9.9.0/24", netns=node) is False  # someone else's: left alone
    assert routes.delete_route("10.200.0.10/32", dev="lxcr", netns=node) is True
    assert routes.delete_route("10.200.0.10/32", dev="lxcr", netns=node) is False
    assert routes.list_routes(node) == []
    assert [r["dst"] for r in ip_json(node, "route", "show", "proto", "static")] == ["10.9.9.0/24"]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"spec": "10.0.0.1/24"}, "has host bits set"),
        ({"spec": "10.0.0.0/24"}, "needs a gateway or a device"),
        ({"spec": "10.0.0.0/24", "gateway": "x"}, "gateway 'x'"),
        ({"spec": "10.0.0.0/24", "dev": "eth0", "scope": "site"}, "scope 'site'"),
        ({"spec": "10.0.0.0/24", "gateway": "10.1.1.1", "onlink": True}, "onlink needs both"),
    ],
)
def test_bad_routes_are_refused(kwargs: dict, message: str) -> None:
    spec = kwargs.pop("spec")
    with pytest.raises(ValidationError, match=message):
        routes.replace_route(spec, **kwargs)


def test_sysctl_is_per_namespace(make_netns: Callable[[str], str]) -> None:
    a, b = make_netns("a"), make_netns("b")
    sysctl.set_sysctl("net.ipv4.ip_forward", 1, netns=a)
    assert sysctl.get_sysctl("net.ipv4.ip_forward", netns=a) == "1"
    assert sysctl.get_sysctl("net.ipv4.ip_forward", netns=b) == "0"
    sysctl.set_sysctl("net/ipv4/conf/lo/rp_filter", "2", netns=a)
    assert sysctl.get_sysctl("net.ipv4.conf.lo.rp_filter", netns=a) == "2"
    with pytest.raises(NetError, match=r"sysctl net.ipv4.conf.nodev.rp_filter: no such parameter"):
        sysctl.set_sysctl("net.ipv4.conf.nodev.rp_filter", 0, netns=a)
    with pytest.raises(ValidationError):
        sysctl.set_sysctl("net..ipv4", 0, netns=a)
    with pytest.raises(ValidationError):
        sysctl.set_sysctl("../../etc/passwd", 0, netns=a)
