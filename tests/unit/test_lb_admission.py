"""Service admission (pure): what an apply allocates, keeps, frees and refuses, with the API server's messages."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from membrane.loadbalancer.admission import (
    CLUSTER_IP,
    NODE_PORT,
    Allocation,
    ServiceInvalid,
    admit,
    allocations_of,
)
from membrane.model.validate import validate_object


def svc(name: str, ns: str = "default", **spec: Any) -> dict[str, Any]:
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
           "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}], **spec}}
    return validate_object(obj, "test", default_namespace=ns)


def nodeport(name: str, *ports: int, **spec: Any) -> dict[str, Any]:
    return svc(name, type="NodePort", ports=[{"name": f"p{i}", "port": 80 + i, **({"nodePort": p} if p else {})}
                                             for i, p in enumerate(ports)], **spec)


def test_allocates_cluster_ip_and_node_ports_and_plans_claims() -> None:
    web, np = svc("web"), nodeport("np", 0, 0)
    plan = admit([(web, None), (np, None)], {}, {})
    assert web["spec"]["clusterIP"] == "10.96.1.1" and web["spec"]["clusterIPs"] == ["10.96.1.1"]
    assert web["spec"]["ipFamilies"] == ["IPv4"] and web["spec"]["ipFamilyPolicy"] == "SingleStack"
    assert np["spec"]["clusterIP"] == "10.96.1.2"
    assert [p["nodePort"] for p in np["spec"]["ports"]] == [30086, 30087]
    assert plan.claims == [Allocation(CLUSTER_IP, "10.96.1.1", "default/web"),
                           Allocation(CLUSTER_IP, "10.96.1.2", "default/np"),
                           Allocation(NODE_PORT, "30086", "default/np"), Allocation(NODE_PORT, "30087", "default/np")]
    assert plan.holds == [] and plan.releases == []


def test_tcp_and_udp_of_one_port_share_a_node_port() -> None:
    dns = svc("dns", type="NodePort", ports=[{"name": "u", "port": 53, "protocol": "UDP"},
                                             {"name": "t", "port": 53, "protocol": "TCP"}])
    plan = admit([(dns, None)], {}, {})
    assert [p["nodePort"] for p in dns["spec"]["ports"]] == [30086, 30086]
    assert [a.value for a in plan.claims if a.kind == NODE_PORT] == ["30086"]


def test_taken_node_port_refused_with_the_api_servers_message() -> None:
    with pytest.raises(ServiceInvalid) as err:
        admit([(nodeport("web2", 30080), None)], {}, {30080: "default/web-np"})
    assert str(err.value) == ('The Service "web2" is invalid: spec.ports[0].nodePort: Invalid value: 30080: '
                              "provided port is already allocated")


def test_taken_and_out_of_range_cluster_ips_refused() -> None:
    with pytest.raises(ServiceInvalid) as err:
        admit([(svc("b", clusterIP="10.96.0.20"), None)], {"10.96.0.20": "default/a"}, {})
    assert str(err.value) == ('The Service "b" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.20"}: '
                              "failed to allocate IP 10.96.0.20: provided IP is already allocated")
    with pytest.raises(ServiceInvalid) as err:
        admit([(svc("c", clusterIP="10.100.0.1"), None)], {}, {})
    assert str(err.value) == ('The Service "c" is invalid: spec.clusterIPs: Invalid value: []string{"10.100.0.1"}: '
                              "failed to allocate IP 10.100.0.1: the provided IP (10.100.0.1) is not in the valid "
                              "range. The range of valid IPs is 10.96.0.0/16")
    with pytest.raises(ServiceInvalid, match="provided IP is already allocated"):
        admit([(svc("d", clusterIP="10.96.0.1"), None)], {}, {})  # default/kubernetes's


def test_default_kubernetes_gets_the_first_ip() -> None:
    kubernetes = svc("kubernetes", ports=[{"name": "https", "port": 443, "targetPort": 6443}])
    plan = admit([(kubernetes, None)], {}, {})
    assert kubernetes["spec"]["clusterIP"] == "10.96.0.1"
    assert plan.claims == [Allocation(CLUSTER_IP, "10.96.0.1", "default/kubernetes")]


def test_two_services_of_one_apply_conflict_and_requests_go_before_automatic_values() -> None:
    with pytest.raises(ServiceInvalid, match='"b" is invalid: spec.ports.0..nodePort: Invalid value: 30090'):
        admit([(nodeport("a", 30090), None), (nodeport("b", 30090), None)], {}, {})
    auto, asks = svc("auto"), svc("asks", clusterIP="10.96.1.1")  # what auto would get first
    admit([(auto, None), (asks, None)], {}, {})
    assert asks["spec"]["clusterIP"] == "10.96.1.1" and auto["spec"]["clusterIP"] == "10.96.1.2"


def test_reapply_keeps_addresses_and_plans_holds_only() -> None:
    first = nodeport("np", 0)
    admit([(first, None)], {}, {})
    stored = copy.deepcopy(first)
    again = nodeport("np", 0)  # the manifest as written: no clusterIP, no nodePort
    plan = admit([(again, stored)], {"10.96.1.1": "default/np"}, {30086: "default/np"})
    assert again["spec"] == stored["spec"]
    assert plan.claims == [] and plan.releases == []
    assert plan.holds == [Allocation(CLUSTER_IP, "10.96.1.1", "default/np"), Allocation(NODE_PORT, "30086", "default/np")]


def test_update_moves_a_node_port_and_a_type_change_frees_them() -> None:
    stored = nodeport("np", 30100, clusterIP="10.96.0.50")
    held_ips, held_ports = {"10.96.0.50": "default/np"}, {30100: "default/np"}
    moved = nodeport("np", 30101)
    plan = admit([(moved, stored)], held_ips, held_ports)
    assert moved["spec"]["clusterIP"] == "10.96.0.50"
    assert plan.claims == [Allocation(NODE_PORT, "30101", "default/np")]
    assert plan.releases == [Allocation(NODE_PORT, "30100", "default/np")]
    plain = svc("np")
    plan = admit([(plain, stored)], held_ips, held_ports)
    assert plan.releases == [Allocation(NODE_PORT, "30100", "default/np")] and plan.claims == []
    external = svc("np", type="ExternalName", externalName="example.com", ports=[{"name": "http", "port": 80}])
    plan = admit([(external, stored)], held_ips, held_ports)
    assert "clusterIP" not in external["spec"]
    assert plan.releases == [Allocation(CLUSTER_IP, "10.96.0.50", "default/np"),
                             Allocation(NODE_PORT, "30100", "default/np")]


def test_cluster_ip_is_immutable() -> None:
    stored = svc("a", clusterIP="10.96.0.50")
    with pytest.raises(ServiceInvalid) as err:
        admit([(svc("a", clusterIP="10.96.0.51"), stored)], {"10.96.0.50": "default/a"}, {})
    assert str(err.value) == 'The Service "a" is invalid: spec.clusterIP: Invalid value: "10.96.0.51": field is immutable'


def test_a_value_given_up_may_be_taken_by_another_service_of_the_same_apply() -> None:
    stored = nodeport("a", 30100)
    plan = admit([(nodeport("a", 30101), stored), (nodeport("b", 30100), None)], {}, {30100: "default/a"})
    assert Allocation(NODE_PORT, "30100", "default/a") in plan.releases
    assert Allocation(NODE_PORT, "30100", "default/b") in plan.claims


def test_headless_and_external_name_hold_nothing() -> None:
    headless, ext = svc("h", clusterIP="None"), svc("e", type="ExternalName", externalName="x.example")
    plan = admit([(headless, None), (ext, None)], {}, {})
    assert plan.empty and headless["spec"]["clusterIP"] == "None"
    assert allocations_of(headless) == [] and allocations_of(ext) == []


def test_refusal_names_the_failing_service_only_and_the_range_full_case() -> None:
    full = {f"10.96.{i // 256}.{i % 256}": "x/y" for i in range(1, 65535)}
    with pytest.raises(ServiceInvalid, match="failed to allocate a serviceIP: range is full"):
        admit([(svc("late"), None)], full, {})


def test_cluster_ips_alone_names_the_cluster_ip_too() -> None:
    only_ips = svc("a", clusterIPs=["10.96.0.40"])
    admit([(only_ips, None)], {}, {})
    assert only_ips["spec"]["clusterIP"] == "10.96.0.40" and only_ips["spec"]["clusterIPs"] == ["10.96.0.40"]


def test_health_check_node_port_allocated_kept_and_conflicts() -> None:
    lb = svc("lb", type="LoadBalancer", externalTrafficPolicy="Local")
    plan = admit([(lb, None)], {}, {})
    assert lb["spec"]["ports"][0]["nodePort"] == 30086 and lb["spec"]["healthCheckNodePort"] == 30087
    assert [a.value for a in plan.claims if a.kind == NODE_PORT] == ["30086", "30087"]
    again = svc("lb", type="LoadBalancer", externalTrafficPolicy="Local")
    plan = admit([(again, lb)], {"10.96.1.1": "default/lb"}, {30086: "default/lb", 30087: "default/lb"})
    assert again["spec"]["healthCheckNodePort"] == 30087 and plan.claims == [] and plan.releases == []
    cluster = svc("lb", type="LoadBalancer")
    plan = admit([(cluster, lb)], {"10.96.1.1": "default/lb"}, {30086: "default/lb", 30087: "default/lb"})
    assert "healthCheckNodePort" not in cluster["spec"]
    assert plan.releases == [Allocation(NODE_PORT, "30087", "default/lb")]
    with pytest.raises(ServiceInvalid) as err:
        admit([(svc("lb2", type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=30080), None)],
              {}, {30080: "default/web-np"})
    assert str(err.value) == ('Internal error occurred: failed to allocate requested HealthCheck NodePort 30080: '
                              'provided port is already allocated (Service "lb2")')
