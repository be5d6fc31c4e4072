"""ClusterIP and NodePort allocators: ranges, reservations, conflicts, snapshot/restore."""

from __future__ import annotations

import pytest

from membrane.loadbalancer.allocators import AllocationError, ClusterIPAllocator, NodePortAllocator


def test_cluster_ips_skip_network_address_and_dns_ip():
    alloc = ClusterIPAllocator()
    got = [alloc.allocate(f"default/s{i}") for i in range(12)]
    assert got[0] == "10.96.0.1"
    assert "10.96.0.0" not in got and "10.96.0.10" not in got
    assert got[9] == "10.96.0.11"
    assert len(set(got)) == 12


def test_dns_ip_is_honoured_when_requested():
    alloc = ClusterIPAllocator()
    assert alloc.allocate("kube-system/kube-dns", "10.96.0.10") == "10.96.0.10"
    assert alloc.owner_of("10.96.0.10") == "kube-system/kube-dns"


def test_allocation_is_idempotent_per_owner():
    alloc = ClusterIPAllocator()
    ip = alloc.allocate("default/web")
    assert alloc.allocate("default/web") == ip
    assert alloc.allocate("default/web", ip) == ip
    assert len(alloc.allocated()) == 1


def test_taken_ip_is_refused_naming_both_services():
    alloc = ClusterIPAllocator()
    alloc.allocate("default/a", "10.96.5.5")
    with pytest.raises(AllocationError) as exc:
        alloc.allocate("prod/b", "10.96.5.5")
    assert str(exc.value) == ("failed to allocate IP 10.96.5.5 for service prod/b: provided IP is already "
                              "allocated to service default/a")


@pytest.mark.parametrize("ip", ["10.97.0.1", "10.96.0.0", "10.96.255.255", "192.168.1.1"])
def test_out_of_range_ip_is_refused(ip):
    with pytest.raises(AllocationError, match="not in the valid range. The range of valid IPs is 10.96.0.0/16"):
        ClusterIPAllocator().allocate("default/a", ip)


def test_invalid_ip_is_refused():
    with pytest.raises(AllocationError, match="not a valid IPv4 address"):
        ClusterIPAllocator().allocate("default/a", "10.96.0.300")


def test_range_full_and_release():
    alloc = ClusterIPAllocator("10.96.0.0/29", reserved=())
    got = [alloc.allocate(f"default/s{i}") for i in range(6)]
    assert got == [f"10.96.0.{i}" for i in range(1, 7)]
    with pytest.raises(AllocationError, match="range is full"):
        alloc.allocate("default/late")
    assert alloc.release("default/s2") == ["10.96.0.3"]
    assert alloc.allocate("default/late") == "10.96.0.3"


def test_released_ip_is_not_reused_at_once():
    alloc = ClusterIPAllocator()
    first = alloc.allocate("default/a")
    alloc.release("default/a")
    assert alloc.allocate("default/b") != first


def test_release_keeps_requested_ones():
    alloc = ClusterIPAllocator()
    alloc.allocate("default/a", "10.96.1.1")
    alloc.allocate("default/a", "10.96.1.2")
    assert alloc.release("default/a", keep=("10.96.1.2",)) == ["10.96.1.1"]
    assert alloc.allocated() == {"10.96.1.2": "default/a"}


def test_cluster_ip_snapshot_round_trip():
    alloc = ClusterIPAllocator()
    alloc.allocate("default/a")
    alloc.allocate("default/b", "10.96.9.9")
    data = alloc.snapshot()
    assert data == {"cidr": "10.96.0.0/16", "next": "10.96.0.2",
                    "allocated": {"10.96.0.1": "default/a", "10.96.9.9": "default/b"}}
    again = ClusterIPAllocator.restore(data)
    assert again.allocated() == alloc.allocated()
    assert again.allocate("default/c") == alloc.allocate("default/c") == "10.96.0.2"


def test_node_ports_range_and_requests():
    alloc = NodePortAllocator()
    assert alloc.allocate("default/a") == 30000
    assert alloc.allocate("default/b", 31000) == 31000
    assert alloc.allocate("default/b", 31000) == 31000  # its own: fine
    with pytest.raises(AllocationError) as exc:
        alloc.allocate("default/c", 31000)
    assert str(exc.value) == ("failed to allocate nodePort 31000 for service default/c: provided port is already "
                              "allocated to service default/b")
    with pytest.raises(AllocationError, match="The range of valid ports is 30000-32767"):
        alloc.allocate("default/c", 29999)
    with pytest.raises(AllocationError, match="not in the valid range"):
        alloc.allocate("default/c", 32768)


def test_node_ports_full_release_and_snapshot():
    alloc = NodePortAllocator((30000, 30002))
    assert [alloc.allocate("default/a") for _ in range(3)] == [30000, 30001, 30002]
    with pytest.raises(AllocationError, match="range is full"):
        alloc.allocate("default/b")
    assert alloc.release("default/a", keep=(30001,)) == [30000, 30002]
    data = alloc.snapshot()
    assert data == {"range": "30000-30002", "next": 30000, "allocated": {"30001": "default/a"}}
    again = NodePortAllocator.restore(data)
    assert again.allocated() == {30001: "default/a"}
    assert again.allocate("default/b") == 30000
