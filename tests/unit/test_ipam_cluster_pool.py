"""Cluster-pool node CIDR allocation (membrane.ipam.cluster_pool)."""

from __future__ import annotations

import pytest

from membrane.ipam.cluster_pool import allocate_node_cidrs
from membrane.ipam.errors import PoolExhausted
from membrane.model.errors import ValidationError


def test_nodes_get_lowest_free_subnets_in_order() -> None:
    result = allocate_node_cidrs(["10.0.0.0/8"], 24, {}, ["node-1", "node-2", "node-3"])
    assert result == {"node-1": "10.0.0.0/24", "node-2": "10.0.1.0/24", "node-3": "10.0.2.0/24"}


def test_mask_size_sets_node_cidr_size() -> None:
    result = allocate_node_cidrs(["10.244.0.0/16"], 26, {}, ["a", "b"])
    assert result == {"a": "10.244.0.0/26", "b": "10.244.0.64/26"}


def test_existing_allocations_are_kept_and_gaps_filled() -> None:
    existing = {"b": "10.0.1.0/24", "d": "10.0.3.0/24"}
    result = allocate_node_cidrs(["10.0.0.0/16"], 24, existing, ["a", "b", "c", "d", "e"])
    assert result == {
        "b": "10.0.1.0/24",
        "d": "10.0.3.0/24",
        "a": "10.0.0.0/24",
        "c": "10.0.2.0/24",
        "e": "10.0.4.0/24",
    }


def test_existing_allocation_outside_pool_never_changes() -> None:
    existing = {"old": "192.168.7.0/24"}
    result = allocate_node_cidrs(["10.0.0.0/16"], 24, existing, ["old", "new"])
    assert result["old"] == "192.168.7.0/24"
    assert result["new"] == "10.0.0.0/24"


def test_existing_allocation_of_other_size_blocks_overlapping_subnets() -> None:
    # Mask size changed from /23 to /24: the old /23 still occupies two /24s.
    result = allocate_node_cidrs(["10.0.0.0/16"], 24, {"old": "10.0.0.0/23"}, ["new"])
    assert result["new"] == "10.0.2.0/24"


def test_input_is_not_mutated_and_result_is_deterministic() -> None:
    existing = {"x": "10.0.5.0/24"}
    first = allocate_node_cidrs(["10.0.0.0/16"], 24, existing, ["a", "b"])
    second = allocate_node_cidrs(["10.0.0.0/16"], 24, existing, ["a", "b"])
    assert first == second
    assert existing == {"x": "10.0.5.0/24"}


def test_duplicate_nodes_are_served_once() -> None:
    result = allocate_node_cidrs(["10.0.0.0/16"], 24, {}, ["a", "a", "b"])
    assert result == {"a": "10.0.0.0/24", "b": "10.0.1.0/24"}


def test_exhaustion_raises_with_partial_result() -> None:
    with pytest.raises(PoolExhausted) as info:
        allocate_node_cidrs(["10.0.0.0/23"], 24, {"x": "10.0.1.0/24"}, ["x", "a", "b", "c"])
    err = info.value
    assert err.node == "b"
    assert err.allocated == {"x": "10.0.1.0/24", "a": "10.0.0.0/24"}
    assert err.unallocated == ["b", "c"]
    message = str(err)
    assert "no free /24 left in clusterPoolIPv4PodCIDRList [10.0.0.0/23]" in message
    assert "'b'" in message
    assert "append a CIDR" in message


def test_appending_a_cidr_extends_the_pool() -> None:
    existing = allocate_node_cidrs(["10.0.0.0/23"], 24, {}, ["a", "b"])
    with pytest.raises(PoolExhausted):
        allocate_node_cidrs(["10.0.0.0/23"], 24, existing, ["a", "b", "c"])
    result = allocate_node_cidrs(["10.0.0.0/23", "172.16.0.0/24"], 24, existing, ["a", "b", "c"])
    assert result == {"a": "10.0.0.0/24", "b": "10.0.1.0/24", "c": "172.16.0.0/24"}


def test_pool_cidrs_are_used_in_list_order() -> None:
    result = allocate_node_cidrs(["10.9.0.0/24", "10.1.0.0/24"], 24, {}, ["a", "b"])
    assert result == {"a": "10.9.0.0/24", "b": "10.1.0.0/24"}


def test_no_allocation_overlaps_another() -> None:
    import ipaddress

    existing = {"odd": "10.0.2.128/25", "big": "10.0.8.0/22"}
    nodes = [f"n{i}" for i in range(30)]
    result = allocate_node_cidrs(["10.0.0.0/16"], 24, existing, nodes)
    nets = [ipaddress.ip_network(c) for c in result.values()]
    for i, a in enumerate(nets):
        for b in nets[i + 1 :]:
            assert not a.overlaps(b), (a, b)


@pytest.mark.parametrize(
    ("pool", "mask", "existing", "nodes", "fragment"),
    [
        ([], 24, {}, ["a"], "clusterPoolIPv4PodCIDRList: must be a non-empty list"),
        (["10.0.0.1/16"], 24, {}, ["a"], "clusterPoolIPv4PodCIDRList[0]: '10.0.0.1/16' is not a valid CIDR"),
        (["10.0.0.0/16", "nope"], 24, {}, ["a"], "clusterPoolIPv4PodCIDRList[1]: 'nope' is not a CIDR"),
        (["fd00::/104"], 120, {}, ["a"], "only IPv4 is supported"),
        (["10.0.0.0/25"], 24, {}, ["a"], "clusterPoolIPv4MaskSize: /24 must be between /25"),
        (["10.0.0.0/16"], 31, {}, ["a"], "clusterPoolIPv4MaskSize: /31 must be between /16"),
        (["10.0.0.0/16"], "24", {}, ["a"], "clusterPoolIPv4MaskSize: expected an integer"),
        (["10.0.0.0/16"], 24, {"a": "bad"}, ["b"], "existing['a']: 'bad' is not a CIDR"),
        (["10.0.0.0/16"], 24, {}, ["a", ""], "nodes[1]: node name must be a non-empty string"),
    ],
)
def test_bad_input_names_the_field(pool, mask, existing, nodes, fragment) -> None:
    with pytest.raises(ValidationError) as info:
        allocate_node_cidrs(pool, mask, existing, nodes)
    assert fragment in str(info.value)
