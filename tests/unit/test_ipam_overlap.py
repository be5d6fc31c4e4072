"""Overlap checks between pod CIDRs and node networks, and kubernetes-mode podCIDR validation."""

from __future__ import annotations

import pytest

from membrane.ipam.kubernetes import validate_kubernetes_pod_cidrs
from membrane.ipam.overlap import check_no_overlap
from membrane.model.errors import ValidationError


def test_pool_overlapping_node_network_names_both() -> None:
    with pytest.raises(ValidationError) as info:
        check_no_overlap(["10.0.0.0/8", "192.168.0.0/16"], ["192.168.10.0/24"])
    assert str(info.value) == (
        "pod CIDR 192.168.0.0/16 (clusterPoolIPv4PodCIDRList) overlaps node network 192.168.10.0/24"
    )


def test_node_pod_cidr_overlap_names_the_node() -> None:
    with pytest.raises(ValidationError) as info:
        check_no_overlap({"node-1": "10.0.1.0/24", "node-2": "172.18.0.0/24"}, ["172.18.0.2/16"])
    assert str(info.value) == "pod CIDR 172.18.0.0/24 (podCIDR of node node-2) overlaps node network 172.18.0.0/16"


def test_disjoint_networks_pass() -> None:
    check_no_overlap(["10.0.0.0/8"], ["192.168.10.0/24", "172.18.0.0/16"])
    check_no_overlap({"n1": "10.0.1.0/24"}, [])


def test_bad_network_text() -> None:
    with pytest.raises(ValidationError, match="node network 'x': 'x' is not a CIDR"):
        check_no_overlap(["10.0.0.0/8"], ["x"])
    with pytest.raises(ValidationError, match="clusterPoolIPv4PodCIDRList: '10.0.0.0/33' is not a valid CIDR"):
        check_no_overlap(["10.0.0.0/33"], [])


def test_kubernetes_pod_cidrs_valid_and_canonical() -> None:
    assert validate_kubernetes_pod_cidrs({"a": "10.244.0.0/24", "b": " 10.244.1.0/24"}) == {
        "a": "10.244.0.0/24",
        "b": "10.244.1.0/24",
    }


def test_kubernetes_pod_cidrs_overlap_between_nodes() -> None:
    with pytest.raises(ValidationError) as info:
        validate_kubernetes_pod_cidrs({"a": "10.244.0.0/23", "b": "10.244.1.0/24"})
    assert str(info.value) == "podCIDR 10.244.1.0/24 of node b overlaps podCIDR 10.244.0.0/23 of node a"


@pytest.mark.parametrize(
    ("cidrs", "fragment"),
    [
        ({"a": "10.244.0.5/24"}, "node a: podCIDR: '10.244.0.5/24' is not a valid CIDR"),
        ({"a": "10.244.0.0/31"}, "node a: podCIDR: 10.244.0.0/31 leaves no usable pod addresses"),
        ({"a": None}, "node a: podCIDR: expected a CIDR string"),
        ({"": "10.0.0.0/24"}, "node name must be a non-empty string"),
    ],
)
def test_kubernetes_pod_cidrs_bad(cidrs, fragment) -> None:
    with pytest.raises(ValidationError) as info:
        validate_kubernetes_pod_cidrs(cidrs)
    assert fragment in str(info.value)
