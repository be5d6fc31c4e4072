"""Per-node frontends of Services: types, backends, traffic policies, affinity, stable IDs."""

from __future__ import annotations

from typing import Any

from membrane.loadbalancer.endpointslices import endpoint_slices
from membrane.loadbalancer.frontends import ServiceIDs, node_frontends, node_ips, service_frontends
from membrane.model.service import check_service

NODES = [{"metadata": {"name": n}, "status": {"addresses": [{"type": "InternalIP", "address": ip},
                                                            {"type": "Hostname", "address": n}]}}
         for n, ip in (("k8s-ctr", "192.168.10.100"), ("k8s-w1", "192.168.10.101"), ("k8s-w2", "192.168.10.102"))]


def svc(name: str = "web", **spec: Any) -> dict[str, Any]:
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
           "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                    "clusterIP": "10.96.0.20", **spec}}
    status = obj["spec"].pop("status", None)
    check_service(obj)
    if status:
        obj["status"] = status
    return obj


def pod(name: str, ip: str, node: str, port: int = 8080, ready: bool = True, **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}, **meta},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": port}]}]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


PODS = [pod("a", "10.0.1.5", "k8s-w1"), pod("b", "10.0.2.6", "k8s-w2", port=9090)]


def frontends(service: dict[str, Any], pods: list[dict[str, Any]] = PODS, node: str | None = None,
              ids: ServiceIDs | None = None):
    return service_frontends(service, endpoint_slices(service, pods), NODES, ids or ServiceIDs(), node)


def test_cluster_ip_with_named_target_port_resolved_per_pod():
    (fe,) = frontends(svc())
    assert (fe.type, fe.address, fe.service, fe.port_name) == ("ClusterIP", "10.96.0.20:80/TCP", "default/web", "http")
    assert [(b.ip, b.port, b.node) for b in fe.backends] == [("10.0.1.5", 8080, "k8s-w1"), ("10.0.2.6", 9090, "k8s-w2")]
    assert not fe.local and fe.affinity_timeout == 0


def test_nodeport_on_the_node_ips():
    s = svc(type="NodePort", ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}])
    fes = frontends(s, node="k8s-w1")
    assert [(f.type, f.address) for f in fes] == [("ClusterIP", "10.96.0.20:80/TCP"),
                                                  ("NodePort", "192.168.10.101:30080/TCP")]
    everywhere = frontends(s)
    assert [f.ip for f in everywhere if f.type == "NodePort"] == ["192.168.10.100", "192.168.10.101", "192.168.10.102"]
    assert node_ips(NODES, "k8s-w2") == ["192.168.10.102"]


def test_loadbalancer_external_ips_and_ingress():
    s = svc(type="LoadBalancer", externalIPs=["10.10.200.2"],
            ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30081}],
            status={"loadBalancer": {"ingress": [{"ip": "10.10.200.1"}, {"hostname": "lb.example"}]}})
    kinds = [(f.type, f.address) for f in frontends(s, node="k8s-ctr")]
    assert kinds == [("ClusterIP", "10.96.0.20:80/TCP"), ("NodePort", "192.168.10.100:30081/TCP"),
                     ("ExternalIPs", "10.10.200.2:80/TCP"), ("LoadBalancer", "10.10.200.1:80/TCP")]
    s["spec"]["allocateLoadBalancerNodePorts"] = False
    assert "NodePort" not in [f.type for f in frontends(s, node="k8s-ctr")]


def test_external_traffic_policy_local_keeps_local_backends_for_external_frontends_only():
    s = svc(type="NodePort", externalTrafficPolicy="Local",
            ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}])
    cip, np_ = frontends(s, node="k8s-w1")
    assert not cip.local and len(cip.backends) == 2
    assert np_.local and [b.ip for b in np_.backends] == ["10.0.1.5"]
    _, np_ctr = frontends(s, node="k8s-ctr")
    assert np_ctr.backends == ()


def test_internal_traffic_policy_local_trims_cluster_ip():
    (fe,) = frontends(svc(internalTrafficPolicy="Local"), node="k8s-w2")
    assert fe.local and [b.ip for b in fe.backends] == ["10.0.2.6"]


def test_session_affinity_timeout():
    assert frontends(svc(sessionAffinity="ClientIP"))[0].affinity_timeout == 10800
    s = svc(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    assert frontends(s)[0].affinity_timeout == 60


def test_terminating_and_not_ready_backends():
    pods = [*PODS, pod("t", "10.0.1.7", "k8s-w1", deletionTimestamp="2024-01-01T00:00:00Z"),
            pod("nr", "10.0.1.8", "k8s-w1", ready=False)]
    (fe,) = frontends(svc(), pods)
    assert sorted((b.ip, b.terminating) for b in fe.backends) == [("10.0.1.5", False), ("10.0.1.7", True),
                                                                  ("10.0.2.6", False)]
    assert sorted(b.ip for b in fe.active_backends) == ["10.0.1.5", "10.0.2.6"]
    (only_terminating,) = frontends(svc(), pods[2:])
    assert [b.ip for b in only_terminating.active_backends] == ["10.0.1.7"]


def test_headless_and_externalname_have_no_frontends():
    assert frontends(svc(clusterIP="None")) == []
    external = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": "default"},
                "spec": {"type": "ExternalName", "externalName": "example.com"}}
    assert frontends(external) == []


def test_selectorless_service_with_hand_written_slice():
    s = svc(selector=None)
    sl = {"metadata": {"name": "manual", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
          "addressType": "IPv4", "ports": [{"name": "http", "port": 7000, "protocol": "TCP"}],
          "endpoints": [{"addresses": ["10.0.3.3"]}]}
    other = {**sl, "metadata": {**sl["metadata"], "labels": {"kubernetes.io/service-name": "db"}}}
    (fe,) = service_frontends(s, [sl, other], NODES, ServiceIDs())
    assert [(b.ip, b.port) for b in fe.backends] == [("10.0.3.3", 7000)]


def test_ids_are_small_stable_and_reused():
    ids = ServiceIDs()
    web = svc()
    db = svc("db", clusterIP="10.96.0.30", selector={"app": "db"})
    db_pod = {**pod("d", "10.0.1.9", "k8s-w1"), "metadata": {"name": "d", "namespace": "default",
                                                            "labels": {"app": "db"}}}
    pods = [*PODS, db_pod]
    slices = [s for x in (web, db) for s in endpoint_slices(x, pods)]
    first = node_frontends([web, db], slices, NODES, ids)
    assert [(f.id, f.ip) for f in first] == [(1, "10.96.0.20"), (2, "10.96.0.30")]
    assert sorted(b.id for f in first for b in f.backends) == [1, 2, 3]
    again = node_frontends([web, db], slices, NODES, ids)
    assert again == first
    # web goes away: db keeps its IDs; a new service reuses the freed frontend ID
    only_db = node_frontends([db], slices, NODES, ids)
    assert [(f.id, f.ip, [b.id for b in f.backends]) for f in only_db] == [(2, "10.96.0.30", [3])]
    new = svc("new", clusterIP="10.96.0.40")
    later = node_frontends([db, new], slices + endpoint_slices(new, pods), NODES, ids)
    assert [(f.id, f.ip) for f in later] == [(1, "10.96.0.40"), (2, "10.96.0.30")]


def test_unallocated_service_is_not_served():
    """Admission allocates when a Service is stored; one without its addresses gets no frontend at all."""
    no_ip = svc("no-ip", clusterIP="")
    no_np = svc("no-np", type="NodePort", clusterIP="10.96.0.21")
    headless = svc("headless", clusterIP="None")
    assert frontends(no_ip) == [] and frontends(no_np) == [] and frontends(headless) == []
    got = node_frontends([no_ip, no_np, svc()], [], NODES, ServiceIDs())
    assert [f.service for f in got] == ["default/web"]


def test_two_claimants_of_one_address_only_the_older_is_served():
    older = svc("web-np", type="NodePort", clusterIP="10.96.0.30",
                ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}])
    older["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    newer = svc("taker", type="NodePort", clusterIP="10.96.0.31",
                ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}])
    newer["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    same_ip = svc("same-ip", clusterIP="10.96.0.30")
    same_ip["metadata"]["creationTimestamp"] = "2026-01-03T00:00:00Z"
    for order in ([older, newer, same_ip], [same_ip, newer, older]):
        got = node_frontends(order, [], NODES, ServiceIDs(), node="k8s-w1")
        assert {f.service for f in got} == {"default/web-np"}
