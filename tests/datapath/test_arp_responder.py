"""The L2 announcement ARP responder on a real veth: answers only for the addresses it is given, on
the device it is given, with that device's MAC; gratuitous ARP updates a neighbour's cache; it stops
answering when the entry goes."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from membrane.datapath.linux.arp_responder import ARPResponder
from membrane.datapath.linux.netns import run_in_netns

pytestmark = pytest.mark.root
VIP = "192.168.77.240"


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=check)


@pytest.fixture
def wire(make_netns: Callable[[str], str]) -> tuple[str, str, str]:
    """(node netns, world netns, node MAC): node eth1 <-> world eth0 on 192.168.77.0/24."""
    node, world = make_netns("node"), make_netns("world")
    sh("ip", "link", "add", "eth1", "netns", node, "type", "veth", "peer", "name", "eth0", "netns", world)
    sh("ip", "-n", node, "addr", "add", "192.168.77.1/24", "dev", "eth1")
    sh("ip", "-n", world, "addr", "add", "192.168.77.200/24", "dev", "eth0")
    for ns, dev in ((node, "eth1"), (world, "eth0")):
        sh("ip", "-n", ns, "link", "set", dev, "up")
    mac = sh("ip", "netns", "exec", node, "cat", "/sys/class/net/eth1/address", check=False).stdout.strip()
    if not mac:  # sysfs of the host: read it through ip instead
        mac = re.search(r"link/ether (\S+)", sh("ip", "-n", node, "link", "show", "eth1").stdout).group(1)  # type: ignore[union-attr]
    return node, world, mac


@pytest.fixture
def responder() -> Iterator[ARPResponder]:
    r = ARPResponder()
    yield r
    r.close()


def arping(world: str, ip: str) -> list[str]:
    out = sh("ip", "netns", "exec", world, "arping", "-c", "2", "-w", "3", "-I", "eth0", ip, check=False).stdout
    return sorted(set(m.lower() for m in re.findall(r"\[([0-9A-Fa-f:]{17})\]", out)))


def test_answers_for_its_addresses_only_with_the_device_mac(wire, responder: ARPResponder) -> None:
    node, world, mac = wire
    assert arping(world, VIP) == []  # the kernel does not answer for an address it does not hold
    run_in_netns(node, responder.set_entries, {(VIP, "eth1")})
    assert arping(world, VIP) == [mac]
    assert arping(world, "192.168.77.241") == []
    assert responder.entries()[0].responses >= 1
    run_in_netns(node, responder.set_entries, set())
    assert arping(world, VIP) == []


def test_silent_past_its_deadline(wire, responder: ARPResponder) -> None:
    node, world, _ = wire
    run_in_netns(node, responder.set_entries, {(VIP, "eth1")}, time.monotonic() - 1)
    assert arping(world, VIP) == []
    assert responder.entries()[0].responses == 0


def test_gratuitous_arp_updates_the_neighbour(wire, responder: ARPResponder) -> None:
    node, world, mac = wire
    sh("ip", "-n", world, "neigh", "replace", VIP, "lladdr", "02:00:00:00:00:99", "dev", "eth0", "nud", "stale")
    run_in_netns(node, responder.set_entries, {(VIP, "eth1")})
    responder.gratuitous(VIP, "eth1")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if mac in sh("ip", "-n", world, "neigh", "show", VIP).stdout.lower():
            return
        time.sleep(0.1)
    raise AssertionError(sh("ip", "-n", world, "neigh", "show", VIP).stdout)
