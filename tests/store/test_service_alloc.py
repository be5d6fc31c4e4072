"""Service addresses allocated at admission, against a real etcd: in the apply's transaction, refusals store
nothing, deletes free, and two applies racing for one address cannot both win."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from membrane.loadbalancer.admission import ServiceInvalid
from membrane.model.validate import validate_object
from membrane.store.etcd import EtcdClient
from membrane.store.resources import ResourceStore
from membrane.store.service_alloc import read_owners
from tests.etcd_fixture import EtcdServer, etcd_server  # noqa: F401  (fixture)


@pytest.fixture
def cluster() -> str:
    return f"c{uuid.uuid4().hex[:8]}"


@pytest.fixture
def store(client: EtcdClient, cluster: str) -> ResourceStore:
    return ResourceStore(client, cluster)


@pytest.fixture
def other(etcd_server: EtcdServer, cluster: str) -> Iterator[ResourceStore]:  # noqa: F811
    """A second store on its own connection: another `membrane apply` process."""
    c = EtcdClient(etcd_server.endpoint)
    yield ResourceStore(c, cluster)
    c.close()


def svc(name: str, node_port: int | None = None, **spec: Any) -> dict[str, Any]:
    port: dict[str, Any] = {"name": "http", "port": 80}
    if node_port is not None:
        spec.setdefault("type", "NodePort")
        if node_port:
            port["nodePort"] = node_port
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
           "spec": {"selector": {"app": name}, "ports": [port], **spec}}
    return validate_object(obj, "test")


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}


def stored(store: ResourceStore) -> dict[str, dict[str, Any]]:
    return {s["metadata"]["name"]: s["spec"] for s in store.list("core", "Service")[0]}


def test_apply_allocates_and_writes_one_key_per_value(store: ResourceStore, cluster: str) -> None:
    [(web, verdict)] = store.apply_many([svc("web", node_port=0)])
    assert verdict == "created"
    assert web["spec"]["clusterIP"] == "10.96.1.1" and web["spec"]["ports"][0]["nodePort"] == 30086
    assert stored(store)["web"] == web["spec"]
    assert read_owners(store.client, store.layout) == ({"10.96.1.1": "default/web"}, {30086: "default/web"})
    assert store.client.get(f"/membrane/{cluster}/ipam/services/nodeport/30086").value == b"default/web"
    # re-applying the manifest as written keeps both values and changes nothing
    [(again, verdict)] = store.apply_many([svc("web", node_port=0)])
    assert verdict == "unchanged" and again["spec"] == web["spec"]


def test_refused_apply_stores_nothing(store: ResourceStore) -> None:
    store.apply_many([svc("web-np", node_port=30080, clusterIP="10.96.0.20")])
    before = read_owners(store.client, store.layout)
    for bad, message in [
        (svc("web2", node_port=30080), 'The Service "web2" is invalid: spec.ports[0].nodePort: Invalid value: 30080: '
                                       "provided port is already allocated"),
        (svc("web3", clusterIP="10.96.0.20"), 'The Service "web3" is invalid: spec.clusterIPs: Invalid value: '
                                              '[]string{"10.96.0.20"}: failed to allocate IP 10.96.0.20: provided IP '
                                              "is already allocated"),
        (svc("web4", clusterIP="10.97.0.5"), "failed to allocate IP 10.97.0.5: the provided IP (10.97.0.5) is not in "
                                             "the valid range. The range of valid IPs is 10.96.0.0/16"),
    ]:
        with pytest.raises(ServiceInvalid) as err:
            store.apply_many([pod("p"), svc("fine"), bad])
        assert message in str(err.value)
        assert sorted(stored(store)) == ["web-np"] and store.list("core", "Pod")[0] == []
        assert read_owners(store.client, store.layout) == before


def test_delete_frees_the_values(store: ResourceStore) -> None:
    store.apply_many([svc("a", node_port=30100, clusterIP="10.96.3.3"), pod("p")])
    assert store.delete_many([("core", "Service", "default", "a"), ("core", "Pod", "default", "p"),
                              ("core", "Service", "default", "gone")]) == [True, True, False]
    assert read_owners(store.client, store.layout) == ({}, {})
    [(b, _)] = store.apply_many([svc("b", node_port=30100, clusterIP="10.96.3.3")])
    assert b["spec"]["clusterIP"] == "10.96.3.3"


def test_update_releases_what_it_gives_up(store: ResourceStore) -> None:
    store.apply_many([svc("a", node_port=30100)])
    store.apply_many([svc("a", node_port=30101)])
    _ips, ports = read_owners(store.client, store.layout)
    assert ports == {30101: "default/a"}
    store.apply_many([svc("b", node_port=30100)])  # free again


def test_put_object_is_admitted_too(store: ResourceStore) -> None:
    store.apply_many([svc("a", node_port=30100)])
    with pytest.raises(ServiceInvalid, match="provided port is already allocated"):
        store.put_object(svc("b", node_port=30100))
    made = store.put_object(svc("c"))
    assert made["spec"]["clusterIP"] == "10.96.1.2"
    assert sorted(stored(store)) == ["a", "c"]


def _interleave(store: ResourceStore, other: ResourceStore, objs: list[dict[str, Any]]) -> None:
    """Make ``other`` apply ``objs`` between ``store``'s reads and its first write transaction."""
    real = store.client.txn
    done = []

    def txn(compare: Any, success: Any, failure: Any = None) -> Any:
        if not done and any(op.kind == "put" for op in success):
            done.append(other.apply_many(objs))
        return real(compare, success, failure)

    store.client.txn = txn  # type: ignore[method-assign]


def test_race_for_one_node_port_has_one_winner(store: ResourceStore, other: ResourceStore) -> None:
    _interleave(store, other, [svc("theirs", node_port=30080)])
    with pytest.raises(ServiceInvalid, match='"mine" is invalid: spec.ports.0..nodePort: Invalid value: 30080'):
        store.apply_many([svc("mine", node_port=30080)])
    assert sorted(stored(store)) == ["theirs"]
    assert read_owners(store.client, store.layout)[1] == {30080: "default/theirs"}


def test_race_for_automatic_values_gives_distinct_ones(store: ResourceStore, other: ResourceStore) -> None:
    _interleave(store, other, [svc("theirs", node_port=0)])
    [(mine, _)] = store.apply_many([svc("mine", node_port=0)])
    specs = stored(store)
    assert specs["mine"] == mine["spec"]
    assert specs["mine"]["clusterIP"] != specs["theirs"]["clusterIP"]
    assert specs["mine"]["ports"][0]["nodePort"] != specs["theirs"]["ports"][0]["nodePort"]


def test_two_applies_at_once(store: ResourceStore, other: ResourceStore) -> None:
    """Two threads, each its own connection, apply at the same moment, 20 rounds."""
    errors: list[str] = []
    for round_ in range(20):
        barrier = threading.Barrier(2)

        def run(s: ResourceStore, who: str, round_: int = round_, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                s.apply_many([svc(f"{who}-{round_}", node_port=0), svc(f"{who}-fixed-{round_}", node_port=31000 + round_)])
            except ServiceInvalid as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=run, args=(s, who)) for s, who in ((store, "a"), (other, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(errors) == 20 and all("provided port is already allocated" in e for e in errors)
    specs = stored(store)
    assert len(specs) == 40  # each round: both automatic ones, one of the two fixed ones
    ips = [s["clusterIP"] for s in specs.values()]
    ports = [s["ports"][0]["nodePort"] for s in specs.values()]
    assert len(set(ips)) == 40 and len(set(ports)) == 40
    ip_owners, port_owners = read_owners(store.client, store.layout)
    assert sorted(ip_owners) == sorted(ips) and sorted(port_owners) == sorted(ports)


def test_compare_and_swap_write_that_loses_an_address_race_is_refused(store: ResourceStore,
                                                                      other: ResourceStore) -> None:
    [(mine, _)] = store.apply_many([svc("mine", node_port=30100)])
    _interleave(store, other, [svc("theirs", node_port=30101)])
    moved = {**mine, "spec": {**mine["spec"], "ports": [{**mine["spec"]["ports"][0], "nodePort": 30101}]}}
    with pytest.raises(ServiceInvalid, match="provided port is already allocated"):
        store.put_object(moved, expected_revision=int(mine["metadata"]["resourceVersion"]))
    assert read_owners(store.client, store.layout)[1] == {30100: "default/mine", 30101: "default/theirs"}
