"""The hand-packed rtnetlink requests (membrane.datapath.linux.rtnl) on a real kernel: a route by
ifindex is the route the pyroute2 path makes by name, and the kernel's refusals come back as errors."""

from __future__ import annotations

import errno
import json
import subprocess
from collections.abc import Callable

import pytest

from membrane.datapath.linux import routes
from membrane.datapath.linux.errors import NetError
from membrane.datapath.linux.netns import run_in_netns
from membrane.datapath.linux.rtnl import Rtnl, RtnlError
from membrane.endpoint.routing import endpoint_route

pytestmark = pytest.mark.root


def ip_json(netns: str, *args: str) -> list[dict]:
    out = subprocess.run(["ip", "-j", "-n", netns, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout or "[]")


def test_an_endpoint_route_by_index_is_the_route_by_name(make_netns: Callable[[str], str]) -> None:
    by_name, by_index = make_netns("name"), make_netns("index")
    for ns in (by_name, by_index):
        subprocess.run(["ip", "-n", ns, "link", "add", "lxcrt", "type", "veth", "peer", "name", "lxcrtp"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "lxcrt", "up"], check=True)
    run_in_netns(by_name, routes.replace_route, endpoint_route("10.200.0.7", "lxcrt"))
    (link,) = ip_json(by_index, "link", "show", "dev", "lxcrt")
    for _ in range(2):  # a replace: the second one changes nothing
        run_in_netns(by_index, routes.replace_route, endpoint_route("10.200.0.7", "lxcrt"), ifindex=link["ifindex"])
    want = ip_json(by_name, "route", "show", "proto", str(routes.RTPROT_MEMBRANE))
    got = ip_json(by_index, "route", "show", "proto", str(routes.RTPROT_MEMBRANE))
    assert got == want and len(got) == 1
    assert run_in_netns(by_index, routes.route_exists, endpoint_route("10.200.0.7", "lxcrt"))


def test_refusals_come_back_with_the_kernels_errno(make_netns: Callable[[str], str]) -> None:
    ns = make_netns("err")
    with pytest.raises(NetError) as err:  # no device with that index
        run_in_netns(ns, routes.replace_route, endpoint_route("10.200.0.7", "lxcnone"), ifindex=4242)
    assert err.value.errno == errno.ENODEV and "replace route 10.200.0.7/32" in str(err.value)

    def in_ns() -> tuple[int, int]:
        with Rtnl() as rtnl:
            try:
                rtnl.index_and_mac("nosuchdev")
            except RtnlError as exc:
                missing = exc.errno
            rtnl.add_address(1, "10.9.9.9", 32)
            try:
                rtnl.add_address(1, "10.9.9.9", 32)
            except RtnlError as exc:
                return missing, exc.errno
        return missing, 0

    assert run_in_netns(ns, in_ns) == (errno.ENODEV, errno.EEXIST)
    assert run_in_netns(ns, lambda: Rtnl().index_and_mac("lo"))[0] == 1
