"""pod_link.create_pod_interface on a real kernel, in throwaway namespaces: the same interface as
links.create_pod_veth + links.configure_pod_side, and nothing left behind when it fails."""

from __future__ import annotations

import errno
import json
import subprocess
from collections.abc import Callable

import pytest

from membrane.datapath.linux import links, pod_link
from membrane.datapath.linux.errors import NetError
from membrane.datapath.linux.netns import run_in_netns
from membrane.model.errors import ValidationError

pytestmark = pytest.mark.root


def ip_json(netns: str, *args: str) -> list[dict]:
    out = subprocess.run(["ip", "-j", "-n", netns, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout or "[]")


def test_pod_interface_is_up_addressed_and_routed(make_netns: Callable[[str], str]) -> None:
    node, pod = make_netns("node"), make_netns("pod")
    info = run_in_netns(node, pod_link.create_pod_interface, "lxcfast1", pod, "eth0", "10.200.0.10", "10.200.0.1", 1400)
    (host,) = ip_json(node, "link", "show", "dev", "lxcfast1")
    assert host["ifindex"] == info.host_ifindex and host["address"] == info.host_mac
    assert host["mtu"] == 1400 and "UP" in host["flags"]
    (eth0,) = ip_json(pod, "addr", "show", "dev", "eth0")
    assert eth0["ifindex"] == info.pod_ifindex and eth0["address"] == info.pod_mac
    assert eth0["mtu"] == 1400 and "UP" in eth0["flags"]
    assert [(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a["family"] == "inet"] == [("10.200.0.10", 32)]
    (lo,) = ip_json(pod, "link", "show", "dev", "lo")
    assert "UP" in lo["flags"]
    table = {(r["dst"], r.get("gateway"), r.get("scope")): r for r in ip_json(pod, "route", "show")}
    assert ("10.200.0.1", None, "link") in table
    assert "onlink" in table[("default", "10.200.0.1", None)]["flags"]
    assert not links.link_exists("lxcfast1")  # nothing in the test's own namespace


def test_a_clash_in_the_pod_leaves_nothing(make_netns: Callable[[str], str]) -> None:
    node, pod = make_netns("node"), make_netns("pod")
    run_in_netns(node, pod_link.create_pod_interface, "lxcfirst", pod, "eth0", "10.200.0.10", "10.200.0.1")
    with pytest.raises(NetError) as err:  # the pod has an eth0 already
        run_in_netns(node, pod_link.create_pod_interface, "lxcsecond", pod, "eth0", "10.200.0.11", "10.200.0.1")
    assert err.value.errno == errno.EEXIST
    assert not links.link_exists("lxcsecond", node)


def test_a_failure_inside_the_pod_deletes_the_pair(make_netns: Callable[[str], str], monkeypatch) -> None:
    node, pod = make_netns("node"), make_netns("pod")

    def boom(*_a: object) -> None:
        raise NetError(errno.EIO, "injected failure inside the pod")

    monkeypatch.setattr(pod_link, "configure_inside", boom)
    with pytest.raises(NetError, match="injected failure"):
        run_in_netns(node, pod_link.create_pod_interface, "lxcfail", pod, "eth0", "10.200.0.10", "10.200.0.1")
    assert not links.link_exists("lxcfail", node)
    assert not links.link_exists("eth0", pod)


@pytest.mark.parametrize(("args", "message"), [
    (("lxcbad", "eth0", "10.200.0.10", "10.0.0.300"), "router IP '10.0.0.300'"),
    (("lxcbad", "eth0", "10.200.0.300", "10.200.0.1"), "pod address on eth0"),
    (("lxc/bad", "eth0", "10.200.0.10", "10.200.0.1"), "interface name"),
])
def test_bad_input_changes_nothing(make_netns: Callable[[str], str], args: tuple[str, ...], message: str) -> None:
    node, pod = make_netns("node"), make_netns("pod")
    host, ifname, ip, router = args
    with pytest.raises(ValidationError, match=message):
        run_in_netns(node, pod_link.create_pod_interface, host, pod, ifname, ip, router)
    assert [link["ifname"] for link in ip_json(node, "link", "show")] == ["lo"]
    assert [link["ifname"] for link in ip_json(pod, "link", "show")] == ["lo"]
