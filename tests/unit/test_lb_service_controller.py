"""The lab ServiceController against a throwaway etcd: allocation written back, conflicts, slices."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from membrane.lab.services import ServiceController
from membrane.model.validate import validate_object
from membrane.store.etcd import EtcdClient
from membrane.store.resources import ResourceStore
from tests.etcd_fixture import EtcdServer, etcd_server  # noqa: F401  (module-scoped fixture)


@pytest.fixture
def store(etcd_server: EtcdServer) -> Iterator[ResourceStore]:  # noqa: F811
    client = EtcdClient(etcd_server.endpoint)
    yield ResourceStore(client, f"c{uuid.uuid4().hex[:8]}")  # a cluster of our own per test
    client.close()


def service(name: str, **spec: Any) -> dict[str, Any]:
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}], **spec}}
    return validate_object(obj, "default")


def pod(name: str, app: str, ip: str, node: str = "k8s-w1") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}}


def apply(store: ResourceStore, *objs: dict[str, Any]) -> None:
    store.apply_many(list(objs))


def services(store: ResourceStore) -> dict[str, dict[str, Any]]:
    return {s["metadata"]["name"]: s for s in store.list("core", "Service")[0]}


def sync(ctrl: ServiceController, store: ResourceStore) -> dict[str, dict[str, Any]]:
    ctrl.sync(list(services(store).values()), store.list("core", "Pod")[0])
    return services(store)


def test_allocates_cluster_ip_and_node_ports_and_persists_state(store):
    apply(store, service("web"), service("np", type="NodePort",
                                         ports=[{"name": "a", "port": 80}, {"name": "b", "port": 80, "protocol": "UDP"},
                                                {"name": "c", "port": 443}]))
    ctrl = ServiceController(store)
    got = sync(ctrl, store)
    np_spec, web_spec = got["np"]["spec"], got["web"]["spec"]
    assert np_spec["clusterIP"] == "10.96.0.1" and np_spec["clusterIPs"] == ["10.96.0.1"]
    assert web_spec["clusterIP"] == "10.96.0.2"
    assert web_spec["ipFamilies"] == ["IPv4"] and web_spec["ipFamilyPolicy"] == "SingleStack"
    assert [p["nodePort"] for p in np_spec["ports"]] == [30000, 30000, 30001]  # TCP+UDP of one port share
    assert "nodePort" not in web_spec["ports"][0]
    kv = store.client.get(store.layout.ipam_key("services"))
    assert kv is not None and kv.key == f"/membrane/{store.layout.cluster}/ipam/services"
    state = json.loads(kv.value)
    assert state["clusterIPs"]["allocated"] == {"10.96.0.1": "default/np", "10.96.0.2": "default/web"}
    assert state["nodePorts"]["allocated"] == {"30000": "default/np", "30001": "default/np"}
    assert sync(ServiceController(store), store) == got  # a fresh controller (restart) changes nothing


def test_requested_values_honoured_and_conflicts_refused(store):
    apply(store, service("dns", clusterIP="10.96.0.10"),
          service("first", type="NodePort", clusterIP="10.96.7.7",
                  ports=[{"name": "http", "port": 80, "nodePort": 31000}]))
    ctrl = ServiceController(store)
    got = sync(ctrl, store)
    assert got["dns"]["spec"]["clusterIP"] == "10.96.0.10"
    assert got["first"]["spec"]["ports"][0]["nodePort"] == 31000
    apply(store, service("second", clusterIP="10.96.7.7"),
          service("third", type="NodePort", ports=[{"name": "http", "port": 80, "nodePort": 31000}]),
          service("outside", clusterIP="10.100.0.1"))
    got = sync(ctrl, store)
    assert ctrl.errors == {
        "default/second": "failed to allocate IP 10.96.7.7 for service default/second: provided IP is already "
                          "allocated to service default/first",
        "default/third": "failed to allocate nodePort 31000 for service default/third: provided port is already "
                         "allocated to service default/first",
        "default/outside": "failed to allocate IP 10.100.0.1 for service default/outside: provided IP is not in "
                           "the valid range. The range of valid IPs is 10.96.0.0/16",
    }
    assert got["first"]["spec"]["clusterIP"] == "10.96.7.7"


def test_deleted_service_frees_its_values(store):
    apply(store, service("a", clusterIP="10.96.3.3"))
    ctrl = ServiceController(store)
    sync(ctrl, store)
    store.delete_many([("core", "Service", "default", "a")])
    sync(ctrl, store)
    apply(store, service("b", clusterIP="10.96.3.3"))
    assert sync(ctrl, store)["b"]["spec"]["clusterIP"] == "10.96.3.3"
    assert ctrl.errors == {}


def test_maintains_endpoint_slices_and_endpoints(store):
    apply(store, service("web"), service("db"), pod("web-1", "web", "10.0.1.5"),
          pod("web-2", "web", "10.0.2.6", node="k8s-w2"))
    ctrl = ServiceController(store)
    sync(ctrl, store)
    slices = {s["metadata"]["labels"]["kubernetes.io/service-name"]: s
              for s in store.list("discovery.k8s.io", "EndpointSlice")[0]}
    assert sorted(slices) == ["db", "web"]
    assert [e["addresses"][0] for e in slices["web"]["endpoints"]] == ["10.0.1.5", "10.0.2.6"]
    assert slices["db"]["endpoints"] == []
    eps = {e["metadata"]["name"]: e for e in store.list("core", "Endpoints")[0]}
    assert [a["ip"] for a in eps["web"]["subsets"][0]["addresses"]] == ["10.0.1.5", "10.0.2.6"]
    revision = slices["web"]["metadata"]["resourceVersion"]
    sync(ctrl, store)  # nothing changed: nothing rewritten
    again = {s["metadata"]["name"]: s for s in store.list("discovery.k8s.io", "EndpointSlice")[0]}
    assert again[slices["web"]["metadata"]["name"]]["metadata"]["resourceVersion"] == revision
    store.delete_many([("core", "Pod", "default", "web-1"), ("core", "Service", "default", "db")])
    sync(ctrl, store)
    slices = store.list("discovery.k8s.io", "EndpointSlice")[0]
    assert [(s["metadata"]["labels"]["kubernetes.io/service-name"], [e["addresses"][0] for e in s["endpoints"]])
            for s in slices] == [("web", ["10.0.2.6"])]
    assert [e["metadata"]["name"] for e in store.list("core", "Endpoints")[0]] == ["web"]
