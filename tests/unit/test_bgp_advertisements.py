"""What a node advertises to its BGP peers (§5.5-5.6): PodCIDR, Service addresses with traffic policies,
LoadBalancer classes, attributes merged, local preference to iBGP peers only."""

from __future__ import annotations

from typing import Any

from membrane.bgp.advertisements import NodeInfo, node_routes

CLUSTER = {"metadata": {"name": "c"}, "spec": {
    "nodeSelector": {"matchLabels": {"bgp": "on"}},
    "bgpInstances": [{"name": "i", "localASN": 65001, "peers": [
        {"name": "router", "peerAddress": "192.168.10.200", "peerASN": 65000, "peerConfigRef": {"name": "pc"}},
        {"name": "ibgp", "peerAddress": "192.168.10.201", "peerASN": 65001, "peerConfigRef": {"name": "pc"}}]}]}}
PEER = {"metadata": {"name": "pc"}, "spec": {"families": [
    {"afi": "ipv4", "safi": "unicast", "advertisements": {"matchLabels": {"advertise": "bgp"}}}]}}
ALL = {"matchExpressions": [{"key": "somekey", "operator": "NotIn", "values": ["never-used-value"]}]}


def advert(name: str, *entries: dict[str, Any], labels: dict | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"advertise": "bgp"} if labels is None else labels},
            "spec": {"advertisements": list(entries)}}


def svc(name: str, lb: str = "", cluster_ip: str = "10.96.0.50", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "labels": {}},
            "spec": {"type": "LoadBalancer", "clusterIP": cluster_ip, **spec},
            "status": {"loadBalancer": {"ingress": [{"ip": lb}] if lb else []}}}


def slice_(service: str, node: str, ready: bool = True) -> dict[str, Any]:
    return {"metadata": {"name": f"{service}-x", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": service}},
            "endpoints": [{"addresses": ["10.0.1.5"], "nodeName": node, "conditions": {"ready": ready}}]}


W1 = NodeInfo("k8s-w1", {"bgp": "on"}, ("10.0.1.0/24",))


def routes(node: NodeInfo, adverts: list, services: list = (), slices: list = (), peer: str = "router") -> list:
    got = node_routes(node, [CLUSTER], [PEER], adverts, list(services), list(slices))
    return next(p.routes for p in got if p.peer == peer)


def test_pod_cidr_and_unselected_nodes() -> None:
    assert [r.prefix for r in routes(W1, [advert("a", {"advertisementType": "PodCIDR"})])] == ["10.0.1.0/24"]
    assert node_routes(NodeInfo("k8s-ctr", {}, ("10.0.0.0/24",)), [CLUSTER], [PEER], [], [], []) == []


def test_unlabelled_advertisement_and_no_families_advertise_nothing() -> None:
    assert routes(W1, [advert("a", {"advertisementType": "PodCIDR"}, labels={})]) == []
    bare = {"metadata": {"name": "pc"}, "spec": {}}
    got = node_routes(W1, [CLUSTER], [bare], [advert("a", {"advertisementType": "PodCIDR"})], [], [])
    assert all(p.routes == [] for p in got)


def test_service_addresses_classes_and_traffic_policies() -> None:
    a = advert("svc", {"advertisementType": "Service", "selector": ALL,
                       "service": {"addresses": ["LoadBalancerIP", "ClusterIP"]}})
    services = [svc("plain", lb="192.0.2.1", cluster_ip="10.96.0.1"),
                svc("other-class", lb="192.0.2.2", cluster_ip="None", loadBalancerClass="example.com/lb"),
                svc("local", lb="192.0.2.3", cluster_ip="10.96.0.3", externalTrafficPolicy="Local"),
                svc("ilocal", cluster_ip="10.96.0.4", internalTrafficPolicy="Local")]
    prefixes = [r.prefix for r in routes(W1, [a], services, [slice_("local", "k8s-w2"), slice_("ilocal", "k8s-w1")])]
    # eTP Local without a local endpoint: the LB IP is withdrawn here (its ClusterIP stays); iTP Local with one: kept
    assert prefixes == ["10.96.0.1/32", "10.96.0.3/32", "10.96.0.4/32", "192.0.2.1/32"]
    with_local = [r.prefix for r in routes(W1, [a], services, [slice_("local", "k8s-w1")])]
    assert "192.0.2.3/32" in with_local and "10.96.0.4/32" not in with_local
    not_ready = [r.prefix for r in routes(W1, [a], services, [slice_("local", "k8s-w1", ready=False)])]
    assert "192.0.2.3/32" not in not_ready


def test_nil_selector_selects_no_service_and_aggregation() -> None:
    nil = advert("n", {"advertisementType": "Service", "service": {"addresses": ["ClusterIP"]}})
    assert routes(W1, [nil], [svc("a")]) == []
    agg = advert("g", {"advertisementType": "Service", "selector": ALL,
                       "service": {"addresses": ["ClusterIP"], "aggregationLengthIPv4": 24}})
    assert [r.prefix for r in routes(W1, [agg], [svc("a")])] == ["10.96.0.0/24"]


def test_attributes_merge_and_local_preference_only_to_ibgp() -> None:
    one = advert("one", {"advertisementType": "PodCIDR", "attributes": {
        "communities": {"standard": ["65000:100"]}, "localPreference": 100}})
    two = advert("two", {"advertisementType": "PodCIDR", "attributes": {
        "communities": {"wellKnown": ["no-export"]}, "localPreference": 200}})
    ebgp = routes(W1, [one, two])
    assert ebgp[0].communities == ("65000:100", "no-export") and ebgp[0].local_preference is None
    assert routes(W1, [one, two], peer="ibgp")[0].local_preference == 200
