"""The operator's LB-IPAM loop against a real etcd: pool and Service status written, addresses released
when a Service is deleted or changes type, the pool's counts following."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from membrane.hubble.metrics import Registry
from membrane.model.validate import validate_object
from membrane.operator.lbipam import LBIPAM
from membrane.store.etcd import EtcdClient
from membrane.store.resources import ResourceStore
from tests.etcd_fixture import etcd_server  # noqa: F401  (fixture)


@pytest.fixture
def loop(client: EtcdClient):
    cluster = f"c{uuid.uuid4().hex[:8]}"
    store = ResourceStore(client, cluster)
    lb = LBIPAM(client, store, f"/membrane/{cluster}", Registry())
    for m in lb.mirrors:
        m.start()
    yield store, lb
    for m in lb.mirrors:
        m.stop()


def settle(store: ResourceStore, lb: LBIPAM) -> None:
    """Run rounds until the mirrors have seen our writes and a round changes nothing."""
    for _ in range(40):
        for m in lb.mirrors:
            want = {kv.key: kv.mod_revision for kv in store.client.get_prefix(m.prefix)[0]}
            deadline = time.monotonic() + 5
            while {kv.key: kv.mod_revision for kv in m.items()} != want:
                assert time.monotonic() < deadline, f"mirror {m.prefix} did not catch up"
                time.sleep(0.02)
        before = store.client.get_prefix(f"/membrane/{store.layout.cluster}/")[1]
        lb.reconcile()
        if store.client.get_prefix(f"/membrane/{store.layout.cluster}/")[1] == before:
            return
    raise AssertionError("LB-IPAM did not settle")


def apply(store: ResourceStore, *objs: dict[str, Any]) -> None:
    store.apply_many([validate_object(o, "test") for o in objs])


def svc(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], **spec}}


POOL = {"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumLoadBalancerIPPool", "metadata": {"name": "cilium-pool"},
        "spec": {"allowFirstLastIPs": "No", "blocks": [{"cidr": "10.10.200.0/29"}]}}


def ingress(store: ResourceStore, name: str) -> list[str]:
    obj = store.get("core", "Service", "default", name)
    assert obj is not None
    return [i["ip"] for i in obj.get("status", {}).get("loadBalancer", {}).get("ingress", [])]


def available(store: ResourceStore) -> str:
    pool = store.get("cilium.io", "CiliumLoadBalancerIPPool", "", "cilium-pool")
    assert pool is not None
    return next(c["message"] for c in pool["status"]["conditions"] if c["type"] == "cilium.io/IPsAvailable")


def test_pool_serves_services_and_releases(loop) -> None:
    store, lb = loop
    apply(store, svc("plain", type="ClusterIP"), svc("a"))
    settle(store, lb)
    assert ingress(store, "a") == []  # no pool yet: LB-IPAM is dormant, nothing written
    assert "conditions" not in (store.get("core", "Service", "default", "a") or {}).get("status", {})
    apply(store, POOL)
    settle(store, lb)
    assert ingress(store, "a") == ["10.10.200.1"]
    apply(store, svc("b"), svc("c") | {"metadata": {"name": "c", "annotations": {
        "lbipam.cilium.io/ips": "10.10.200.6"}}})
    settle(store, lb)
    assert (ingress(store, "b"), ingress(store, "c")) == (["10.10.200.2"], ["10.10.200.6"])
    assert available(store) == "3"
    apply(store, svc("a"))  # re-applying without status keeps the address
    settle(store, lb)
    assert ingress(store, "a") == ["10.10.200.1"]
    store.delete_many([("core", "Service", "default", "a")])
    apply(store, svc("b", type="NodePort"))
    settle(store, lb)
    b = store.get("core", "Service", "default", "b")
    assert b is not None and b.get("status", {}) == {}  # type change: address and condition gone
    assert available(store) == "5"


def test_unsatisfied_service_gets_the_reason(loop) -> None:
    store, lb = loop
    apply(store, POOL, {**svc("x"), "metadata": {"name": "x", "annotations": {"lbipam.cilium.io/ips": "192.0.2.1"}}})
    settle(store, lb)
    obj = store.get("core", "Service", "default", "x")
    assert obj is not None
    cond = obj["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("cilium.io/IPAMRequestSatisfied", "False", "no_pool")
    assert "'192.0.2.1'" in cond["message"]


def test_update_statuses_is_compare_and_swap_per_object(loop) -> None:
    store, _ = loop
    apply(store, svc("a"), svc("b"))
    a, b = (store.get("core", "Service", "default", n) for n in ("a", "b"))
    assert a is not None and b is not None
    apply(store, svc("b", ports=[{"port": 81}]))  # b changes after it was read
    done = store.update_statuses([(a, {"loadBalancer": {"ingress": [{"ip": "10.1.1.1"}]}}),
                                  (b, {"loadBalancer": {"ingress": [{"ip": "10.1.1.2"}]}})])
    assert done == [True, False]
    a2 = store.get("core", "Service", "default", "a")
    assert a2 is not None and ingress(store, "a") == ["10.1.1.1"] and ingress(store, "b") == []
    assert a2["spec"]["clusterIP"] == a["spec"]["clusterIP"]  # spec and addresses untouched
