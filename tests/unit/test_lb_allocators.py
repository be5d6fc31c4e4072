"""ClusterIP and NodePort ranges: static/dynamic bands, reservations, conflicts and the API server's reasons."""

from __future__ import annotations

import pytest

from membrane.loadbalancer.allocators import AllocationError, NodePortRange, RangeFull, ServiceIPRange


def test_first_ip_belongs_to_default_kubernetes() -> None:
    ips = ServiceIPRange()
    assert ips.kubernetes_ip == "10.96.0.1"
    assert ips.owner_of("10.96.0.1") == "default/kubernetes"
    with pytest.raises(AllocationError, match="^provided IP is already allocated$"):
        ips.claim("10.96.0.1", "default/web")
    assert ips.claim("10.96.0.1", "default/kubernetes") == "10.96.0.1"


def test_dynamic_ips_come_from_above_the_static_band_first() -> None:
    ips = ServiceIPRange()
    assert ips.allocate_next("default/a") == "10.96.1.1"  # 10.96.0.1-10.96.1.0 (256) is the static band
    assert ips.allocate_next("default/b") == "10.96.1.2"
    assert ips.claim("10.96.0.20", "default/c") == "10.96.0.20"
    assert ips.allocated() == {"10.96.0.1": "default/kubernetes", "10.96.0.20": "default/c",
                               "10.96.1.1": "default/a", "10.96.1.2": "default/b"}


def test_small_range_falls_back_to_the_static_band_and_skips_dns_then_is_full() -> None:
    ips = ServiceIPRange("10.96.0.0/28")  # 14 hosts, all in the 16-address static band
    got = [ips.allocate_next(f"default/s{i}") for i in range(12)]
    assert "10.96.0.1" not in got and "10.96.0.10" not in got
    assert got[0] == "10.96.0.2" and len(set(got)) == 12
    with pytest.raises(RangeFull, match="range is full"):
        ips.allocate_next("default/late")
    assert ips.claim("10.96.0.10", "kube-system/kube-dns") == "10.96.0.10"  # on request only


@pytest.mark.parametrize("ip", ["10.97.0.5", "10.96.0.0", "10.96.255.255"])
def test_ip_outside_the_range(ip: str) -> None:
    with pytest.raises(AllocationError) as err:
        ServiceIPRange().claim(ip, "default/a")
    assert str(err.value) == (f"the provided IP ({ip}) is not in the valid range. "
                              "The range of valid IPs is 10.96.0.0/16")


def test_ip_claimed_twice_by_one_owner_is_fine_by_another_refused_and_release_frees() -> None:
    ips = ServiceIPRange(owners={"10.96.0.20": "default/a"})
    assert ips.claim("10.96.0.20", "default/a") == "10.96.0.20"
    with pytest.raises(AllocationError, match="already allocated"):
        ips.claim("10.96.0.20", "default/b")
    ips.release("10.96.0.20", "default/b")  # not b's: nothing happens
    assert ips.owner_of("10.96.0.20") == "default/a"
    ips.release("10.96.0.20", "default/a")
    assert ips.claim("10.96.0.20", "default/b") == "10.96.0.20"
    assert ips.owned_by("default/b") == ["10.96.0.20"]


def test_node_ports_bands_conflicts_and_range() -> None:
    ports = NodePortRange(owners={30080: "default/web-np"})
    assert ports.allocate_next("default/a") == 30086  # 30000-30085 is the static band of 2768 ports
    with pytest.raises(AllocationError, match="^provided port is already allocated$"):
        ports.claim(30080, "default/other")
    assert ports.claim(30080, "default/web-np") == 30080
    with pytest.raises(AllocationError) as err:
        ports.claim(29999, "default/a")
    assert str(err.value) == "provided port is not in the valid range. The range of valid ports is 30000-32767"
    small = NodePortRange((30000, 30001))
    assert [small.allocate_next("a"), small.allocate_next("b")] == [30000, 30001]
    with pytest.raises(RangeFull):
        small.allocate_next("c")
