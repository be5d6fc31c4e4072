"""The lab's Deployment controller against a real etcd: with a ``place`` hook (the lab kubelet's
scheduler) a new pod is written once, bound and with its first status, not created and then bound."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from membrane.lab.deployments import DeploymentController
from membrane.store.etcd import EtcdClient
from membrane.store.resources import ResourceStore
from tests.etcd_fixture import EtcdServer, etcd_server  # noqa: F401  (fixture)


@pytest.fixture
def store(etcd_server: EtcdServer) -> ResourceStore:  # noqa: F811
    return ResourceStore(EtcdClient(etcd_server.endpoint), f"c{uuid.uuid4().hex[:8]}")


def deployment(replicas: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


def stored_deployment(store: ResourceStore, replicas: int) -> dict[str, Any]:
    store.apply_many([deployment(replicas)])
    got = store.get("apps", "Deployment", "default", "web")
    assert got is not None
    return got


def test_placed_pods_are_created_bound_with_their_status_in_one_write(store: ResourceStore) -> None:
    nodes = iter(["n1", "n2", "n1"])

    def place(pod: dict[str, Any]) -> dict[str, Any]:
        node = next(nodes)
        if node == "n2":
            return pod  # no node takes it: created unscheduled
        return {**pod, "spec": {**pod["spec"], "nodeName": node}, "status": {"phase": "Pending"}}

    seen: list[dict[str, Any]] = []
    DeploymentController(store).sync([stored_deployment(store, 3)], [], place=place, created=seen.extend)
    pods = store.list("core", "Pod", "default")[0]
    assert len(pods) == 3 and len(seen) == 3
    assert sorted(p["spec"].get("nodeName", "") for p in pods) == ["", "n1", "n1"]
    for p in pods:
        bound = bool(p["spec"].get("nodeName"))
        assert (p.get("status") == {"phase": "Pending"}) == bound
        assert p["metadata"]["generation"] == 1  # created as it is, never rewritten
    assert {p["metadata"]["uid"] for p in seen} == {p["metadata"]["uid"] for p in pods}  # as stored


def test_without_place_pods_are_created_unscheduled(store: ResourceStore) -> None:
    DeploymentController(store).sync([stored_deployment(store, 2)], [])
    pods = store.list("core", "Pod", "default")[0]
    assert len(pods) == 2 and not any(p["spec"].get("nodeName") or p.get("status") for p in pods)


def test_the_deployment_status_is_written_once_per_change(store: ResourceStore) -> None:
    ctrl = DeploymentController(store)
    ctrl.sync([stored_deployment(store, 2)], [])
    first = store.get("apps", "Deployment", "default", "web")
    assert first is not None and first["status"]["unavailableReplicas"] == 2 and first["status"]["readyReplicas"] == 0
    assert first["metadata"]["generation"] == 1  # a status write is no spec change
    pods = store.list("core", "Pod", "default")[0]
    ctrl.sync([first], pods)  # the pods now exist: the status changes
    second = store.get("apps", "Deployment", "default", "web")
    assert second is not None and second["status"] != first["status"]
    ctrl.sync([second], pods)  # nothing changed: nothing written
    third = store.get("apps", "Deployment", "default", "web")
    assert third is not None and third["metadata"]["resourceVersion"] == second["metadata"]["resourceVersion"]
