"""HostPort frontends from pods' container ports: addresses, node scoping, conflicts, IDs shared with Services."""

from __future__ import annotations

from typing import Any

from membrane.loadbalancer.endpointslices import endpoint_slices
from membrane.loadbalancer.frontends import ServiceIDs, node_frontends
from membrane.loadbalancer.hostport import HOST_PORT, hostport_frontends, node_frontends_with_hostports
from membrane.model.service import check_service

NODES = [{"metadata": {"name": n}, "status": {"addresses": [{"type": "InternalIP", "address": ip},
                                                            {"type": "Hostname", "address": n}]}}
         for n, ip in (("k8s-ctr", "192.168.10.100"), ("k8s-w1", "192.168.10.101"), ("k8s-w2", "192.168.10.102"))]


def pod(name: str, ip: str | None, node: str, ports: list[dict[str, Any]], created: str = "2026-01-01T00:00:00Z",
        **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}, "creationTimestamp": created},
        "spec": {"nodeName": node, "containers": [{"name": "c", "ports": ports}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    if ip:
        obj["status"]["podIP"] = ip
    for key, value in extra.items():
        section, field = key.split("__")
        obj[section][field] = value
    return obj


WEB = pod("web", "10.0.1.5", "k8s-w1", [{"name": "http", "containerPort": 80, "hostPort": 8080},
                                        {"containerPort": 53, "hostPort": 5353, "protocol": "UDP"},
                                        {"containerPort": 9000}])


def test_host_port_on_the_pods_node_ips_only():
    fes = hostport_frontends([WEB], NODES, ServiceIDs(), node="k8s-w1")
    assert [(f.type, f.address, f.service, f.port_name) for f in fes] == [
        (HOST_PORT, "192.168.10.101:8080/TCP", "default/web/host-port/8080", "http"),
        (HOST_PORT, "192.168.10.101:5353/UDP", "default/web/host-port/5353", ""),
    ]
    assert [b.address for b in fes[0].backends] == ["10.0.1.5:80/TCP"]
    assert [b.address for b in fes[1].backends] == ["10.0.1.5:53/UDP"]
    assert fes[0].backends[0].node == "k8s-w1" and not fes[0].local and fes[0].affinity_timeout == 0
    assert hostport_frontends([WEB], NODES, ServiceIDs(), node="k8s-w2") == []


def test_cluster_wide_view_uses_each_pods_own_node():
    other = pod("other", "10.0.2.7", "k8s-w2", [{"containerPort": 80, "hostPort": 8080}])
    fes = hostport_frontends([WEB, other], NODES, ServiceIDs())
    assert sorted(f.address for f in fes if f.port == 8080) == ["192.168.10.101:8080/TCP", "192.168.10.102:8080/TCP"]


def test_host_ip_limits_the_address_and_zero_means_all():
    specific = pod("a", "10.0.1.5", "k8s-w1", [{"containerPort": 80, "hostPort": 8080, "hostIP": "192.168.10.101"}])
    wildcard = pod("b", "10.0.1.6", "k8s-w1", [{"containerPort": 80, "hostPort": 8081, "hostIP": "0.0.0.0"}])
    two_ips = [{"metadata": {"name": "k8s-w1"}, "status": {"addresses": [
        {"type": "InternalIP", "address": "192.168.10.101"}, {"type": "ExternalIP", "address": "203.0.113.1"}]}}]
    fes = hostport_frontends([specific, wildcard], two_ips, ServiceIDs(), node="k8s-w1")
    assert [f.address for f in fes] == ["192.168.10.101:8080/TCP", "192.168.10.101:8081/TCP", "203.0.113.1:8081/TCP"]


def test_pods_without_ip_terminal_host_network_or_no_host_port_are_skipped():
    ports = [{"containerPort": 80, "hostPort": 8080}]
    pods = [pod("pending", None, "k8s-w1", ports),
            pod("done", "10.0.1.7", "k8s-w1", ports, status__phase="Succeeded"),
            pod("failed", "10.0.1.8", "k8s-w1", ports, status__phase="Failed"),
            pod("hostnet", "192.168.10.101", "k8s-w1", [{"containerPort": 8080, "hostPort": 8080}],
                spec__hostNetwork=True),
            pod("zero", "10.0.1.9", "k8s-w1", [{"containerPort": 80, "hostPort": 0}]),
            pod("sctp", "10.0.1.10", "k8s-w1", [{"containerPort": 80, "hostPort": 8080, "protocol": "SCTP"}]),
            pod("unscheduled", "10.0.1.11", "", ports)]
    assert hostport_frontends(pods, NODES, ServiceIDs()) == []


def test_deleting_pod_keeps_its_backend_for_existing_connections():
    gone = pod("gone", "10.0.1.5", "k8s-w1", [{"containerPort": 80, "hostPort": 8080}],
               metadata__deletionTimestamp="2026-01-02T00:00:00Z")
    (fe,) = hostport_frontends([gone], NODES, ServiceIDs(), node="k8s-w1")
    assert fe.backends[0].terminating and fe.active_backends == fe.backends


def test_conflict_goes_to_the_older_pod_in_any_input_order():
    old = pod("old", "10.0.1.5", "k8s-w1", [{"containerPort": 80, "hostPort": 8080}], created="2026-01-01T00:00:00Z")
    new = pod("new", "10.0.1.6", "k8s-w1", [{"containerPort": 81, "hostPort": 8080}], created="2026-01-03T00:00:00Z")
    for order in ([old, new], [new, old]):
        (fe,) = hostport_frontends(order, NODES, ServiceIDs(), node="k8s-w1")
        assert fe.service == "default/old/host-port/8080" and fe.backends[0].ip == "10.0.1.5"
    udp = pod("udp", "10.0.1.7", "k8s-w1", [{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}])
    assert len(hostport_frontends([old, udp], NODES, ServiceIDs(), node="k8s-w1")) == 2  # other protocol: no clash


def _service(**spec: Any) -> dict[str, Any]:
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 80}],
                    "clusterIP": "10.96.0.20", **spec}}
    check_service(obj)
    return obj


def test_combined_with_services_shares_backend_ids_and_service_wins_a_clash():
    svc = _service(type="NodePort", ports=[{"name": "http", "port": 80, "targetPort": 80, "nodePort": 30080}])
    web = pod("web", "10.0.1.5", "k8s-w1", [{"name": "http", "containerPort": 80, "hostPort": 8080},
                                            {"name": "x", "containerPort": 81, "hostPort": 30080}])
    ids = ServiceIDs()
    fes = node_frontends_with_hostports([svc], endpoint_slices(svc, [web]), [web], NODES, ids, node="k8s-w1")
    by_addr = {f.address: f for f in fes}
    assert {a: f.type for a, f in by_addr.items()} == {
        "10.96.0.20:80/TCP": "ClusterIP", "192.168.10.101:30080/TCP": "NodePort", "192.168.10.101:8080/TCP": "HostPort"}
    assert by_addr["192.168.10.101:8080/TCP"].backends[0].id == by_addr["10.96.0.20:80/TCP"].backends[0].id
    assert [f.id for f in fes] == sorted(f.id for f in fes) and len({f.id for f in fes}) == 3
    assert len(ids.backends.ids) == 1  # the clashing HostPort's backend (port 81) was freed


def test_ids_stable_across_calls_and_freed_when_the_pod_goes():
    svc = _service()
    web = pod("web", "10.0.1.5", "k8s-w1", [{"containerPort": 80, "hostPort": 8080}])
    ids = ServiceIDs()
    first = node_frontends_with_hostports([svc], endpoint_slices(svc, [web]), [web], NODES, ids, node="k8s-w1")
    again = node_frontends_with_hostports([svc], endpoint_slices(svc, [web]), [web], NODES, ids, node="k8s-w1")
    assert first == again
    hp_id = next(f.id for f in first if f.type == HOST_PORT)
    assert node_frontends_with_hostports([svc], [], [], NODES, ids, node="k8s-w1")[0].type == "ClusterIP"
    assert (("192.168.10.101", 8080, "TCP")) not in ids.frontends.ids and hp_id not in ids.frontends.ids.values()
    assert ids.backends.ids == {}


def test_without_pods_equals_node_frontends():
    svc = _service(type="NodePort", ports=[{"name": "http", "port": 80, "targetPort": 80, "nodePort": 30080}])
    web = pod("web", "10.0.1.5", "k8s-w1", [{"containerPort": 80}])
    slices = endpoint_slices(svc, [web])
    assert node_frontends_with_hostports([svc], slices, [web], NODES, ServiceIDs(), "k8s-w2") == \
        node_frontends([svc], slices, NODES, ServiceIDs(), "k8s-w2")
