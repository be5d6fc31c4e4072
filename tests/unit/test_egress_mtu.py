"""Pod MTU headroom with the egress gateway: its VXLAN hop to the gateway node needs 50 bytes in native routing."""

from __future__ import annotations

from membrane.model.encap import Encapsulation, fit_headroom, pod_mtu_headroom

NATIVE = Encapsulation("Never", "vxlan", "helm")


def test_native_routing_without_the_egress_gateway_keeps_the_full_mtu() -> None:
    assert pod_mtu_headroom(NATIVE, egress_gateway=False) == 0


def test_the_egress_gateway_reserves_vxlan_overhead_in_native_routing() -> None:
    assert pod_mtu_headroom(NATIVE, egress_gateway=True) == 50


def test_an_encapsulation_that_already_reserves_more_or_as_much_is_kept() -> None:
    assert pod_mtu_headroom(Encapsulation("Always", "vxlan", "routingMode"), egress_gateway=True) == 50
    assert pod_mtu_headroom(Encapsulation("Always", "ipip", "helm"), egress_gateway=False) == 20
    assert pod_mtu_headroom(Encapsulation("CrossSubnet", "ipip", "helm"), egress_gateway=True) == 50


def test_with_that_headroom_a_vxlan_pool_fits_later() -> None:
    pool = Encapsulation("Always", "vxlan", "IPPool/p")
    assert fit_headroom(pool, NATIVE, pod_mtu_headroom(NATIVE, egress_gateway=True)) == (pool, "")
    assert fit_headroom(pool, NATIVE, pod_mtu_headroom(NATIVE, egress_gateway=False))[0] == NATIVE
