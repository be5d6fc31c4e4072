"""Host-scope pod IP allocation (membrane.ipam.host_scope)."""

from __future__ import annotations

import json

import pytest

from membrane.ipam.errors import AddressUnavailable, RangeFull
from membrane.ipam.host_scope import HostScopeAllocator
from membrane.model.errors import ValidationError


def test_range_excludes_network_and_broadcast() -> None:
    alloc = HostScopeAllocator("10.0.1.0/24")
    assert (alloc.first, alloc.last, alloc.capacity) == ("10.0.1.1", "10.0.1.254", 254)
    assert HostScopeAllocator("10.0.0.0/16").capacity == 65534
    assert HostScopeAllocator("10.0.0.0/30").capacity == 2


def test_router_takes_first_usable_and_is_idempotent() -> None:
    alloc = HostScopeAllocator("10.0.1.0/24")
    assert alloc.reserve_router() == "10.0.1.1"
    assert alloc.reserve_router() == "10.0.1.1"
    assert alloc.owner_of("10.0.1.1") == "router"
    assert alloc.used() == {"10.0.1.1": "router"}


def test_router_address_taken_by_someone_else() -> None:
    alloc = HostScopeAllocator("10.0.1.0/24")
    alloc.allocate("default/a")
    with pytest.raises(AddressUnavailable, match="router address 10.0.1.1 .* already allocated to 'default/a'"):
        alloc.reserve_router()


def test_allocate_continues_after_last_and_wraps() -> None:
    alloc = HostScopeAllocator("10.0.1.0/29")  # usable .1-.6
    alloc.reserve_router()
    got = [alloc.allocate(f"p{i}") for i in range(3)]
    assert got == ["10.0.1.2", "10.0.1.3", "10.0.1.4"]
    alloc.release("10.0.1.2")
    # Not reused at once: continues after .4, then wraps to the freed .2.
    assert alloc.allocate("p3") == "10.0.1.5"
    assert alloc.allocate("p4") == "10.0.1.6"
    assert alloc.allocate("p5") == "10.0.1.2"


def test_exhaustion_message_is_host_local_wording_and_changes_nothing() -> None:
    alloc = HostScopeAllocator("10.0.1.0/24")
    alloc.reserve_router()
    for i in range(253):
        alloc.allocate(f"ns/pod-{i}")
    before = alloc.snapshot()
    with pytest.raises(RangeFull) as info:
        alloc.allocate("ns/one-too-many")
    assert str(info.value) == "no IP addresses available in range set: 10.0.1.1-10.0.1.254"
    assert alloc.snapshot() == before
    assert alloc.status_line() == "IPv4: 254/254 allocated from 10.0.1.0/24"


def test_allocate_specific() -> None:
    alloc = HostScopeAllocator("10.0.1.0/24")
    assert alloc.allocate_specific("10.0.1.50", "ns/a") == "10.0.1.50"
    assert alloc.allocate_specific("10.0.1.50", "ns/a") == "10.0.1.50"  # same owner: idempotent
    with pytest.raises(AddressUnavailable, match=r"10\.0\.1\.50 is already allocated to 'ns/a'"):
        alloc.allocate_specific("10.0.1.50", "ns/b")
    for outside in ("10.0.1.0", "10.0.1.255", "10.0.2.7"):
        with pytest.raises(AddressUnavailable, match="not in the usable range 10.0.1.1-10.0.1.254"):
            alloc.allocate_specific(outside, "ns/b")
    with pytest.raises(ValidationError, match="'10.0.1.x' is not a valid IP address"):
        alloc.allocate_specific("10.0.1.x", "ns/b")
    assert alloc.used() == {"10.0.1.50": "ns/a"}


def test_allocate_specific_does_not_move_the_cursor() -> None:
    alloc = HostScopeAllocator("10.0.1.0/24")
    alloc.allocate_specific("10.0.1.9", "x")
    assert alloc.allocate("y") == "10.0.1.1"


def test_release_and_release_owner_are_idempotent() -> None:
    alloc = HostScopeAllocator("10.0.1.0/24")
    alloc.reserve_router()
    a1 = alloc.allocate("ns/a")
    b = alloc.allocate("ns/b")
    a2 = alloc.allocate("ns/a")
    assert alloc.ips_of("ns/a") == [a1, a2]
    assert alloc.release_owner("ns/a") == [a1, a2]
    assert alloc.release_owner("ns/a") == []
    assert alloc.owner_of(a1) is None
    assert alloc.release(b) == "ns/b"
    assert alloc.release(b) is None
    assert alloc.used() == {"10.0.1.1": "router"}
    with pytest.raises(ValidationError, match="10.9.9.9 is not in pod CIDR 10.0.1.0/24"):
        alloc.release("10.9.9.9")


def test_used_is_in_address_order_and_status_line() -> None:
    alloc = HostScopeAllocator("10.0.1.0/24")
    alloc.allocate_specific("10.0.1.100", "x")
    alloc.allocate_specific("10.0.1.20", "y")
    alloc.allocate_specific("10.0.1.3", "z")
    assert list(alloc.used()) == ["10.0.1.3", "10.0.1.20", "10.0.1.100"]
    assert alloc.status_line() == "IPv4: 3/254 allocated from 10.0.1.0/24"
    assert alloc.available == 251


def test_snapshot_restore_round_trip_through_json() -> None:
    alloc = HostScopeAllocator("10.0.1.0/24")
    alloc.reserve_router()
    alloc.allocate("health")
    alloc.allocate("default/web-1")
    alloc.allocate("default/web-2")
    alloc.release("10.0.1.3")
    restored = HostScopeAllocator.restore(json.loads(json.dumps(alloc.snapshot())))
    assert restored == alloc
    assert restored.used() == alloc.used()
    # The cursor survives the restart: the next address follows the one handed out last.
    assert restored.allocate("default/web-3") == alloc.allocate("default/web-3") == "10.0.1.5"


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda s: s.update(version=99), "ipam snapshot: version: version 99 not supported"),
        (lambda s: s.update(cidr="10.0.1.0/33"), "ipam snapshot: cidr: pod CIDR"),
        (lambda s: s["used"].update({"10.0.2.1": "x"}), "ipam snapshot: used['10.0.2.1']: 10.0.2.1 is not in the usable"),
        (lambda s: s["used"].update({"10.0.1.9": ""}), "ipam snapshot: used['10.0.1.9']: owner must be a non-empty"),
        (lambda s: s["used"].update({"junk": "x"}), "ipam snapshot: used['junk']: 'junk' is not a valid IP"),
        (lambda s: s.update(used=[]), "ipam snapshot: used: expected a mapping"),
        (lambda s: s.update(last_allocated="10.0.1.255"), "ipam snapshot: last_allocated: 10.0.1.255 is not in"),
    ],
)
def test_restore_rejects_damaged_snapshot(mutate, fragment) -> None:
    alloc = HostScopeAllocator("10.0.1.0/24")
    alloc.allocate("a")
    snap = alloc.snapshot()
    mutate(snap)
    with pytest.raises(ValidationError) as info:
        HostScopeAllocator.restore(snap)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("cidr", "fragment"),
    [
        ("10.0.1.0/31", "pod CIDR: 10.0.1.0/31 leaves no usable pod addresses"),
        ("10.0.1.1/24", "has host bits set"),
        ("10.0.1.0", "missing prefix length"),
        ("fd00::/120", "only IPv4 is supported"),
    ],
)
def test_bad_cidr(cidr, fragment) -> None:
    with pytest.raises(ValidationError) as info:
        HostScopeAllocator(cidr)
    assert fragment in str(info.value)


def test_owner_must_be_named() -> None:
    alloc = HostScopeAllocator("10.0.1.0/24")
    with pytest.raises(ValidationError, match="owner must be a non-empty string"):
        alloc.allocate("")
    assert alloc.used() == {}
