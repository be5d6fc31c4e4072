"""The lab ServiceController against a throwaway etcd: EndpointSlices and Endpoints (allocation is the
store's, at admission: tests/store/test_service_alloc.py)."""

from __future__ import annotations

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
