"""ResourceStore against a real etcd: apply verdicts, metadata, atomicity, CAS, status."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from membrane.model.errors import ValidationError
from membrane.store.errors import ConflictError, NotFound, StoreError
from membrane.store.etcd import EtcdClient
from membrane.store.layout import ResourceKey
from membrane.store.resources import ResourceStore
from tests.etcd_fixture import EtcdServer, etcd_server  # noqa: F401  (fixture)


@pytest.fixture
def store(client: EtcdClient) -> ResourceStore:
    # A cluster of our own per test: tests do not see each other's objects.
    return ResourceStore(client, f"c{uuid.uuid4().hex[:8]}", clock=lambda: 1_700_000_000.0)


def pod(name: str, ns: str = "default", image: str = "nginx", **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, **meta},
            "spec": {"containers": [{"name": "c", "image": image}]}}


def cnp(name: str) -> dict[str, Any]:
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy", "metadata": {"name": name},
            "spec": {"endpointSelector": {}}}


def test_create_then_unchanged_then_configured(store: ResourceStore, client: EtcdClient) -> None:
    [(obj, verdict)] = store.apply_many([pod("web")])
    assert verdict == "created"
    meta = obj["metadata"]
    assert meta["generation"] == 1 and meta["creationTimestamp"] == "2023-11-14T22:13:20Z"
    uuid.UUID(meta["uid"])
    stored = client.get(f"/membrane/{store.layout.cluster}/resources/core/Pod/default/web")
    assert meta["resourceVersion"] == str(stored.mod_revision)
    assert "resourceVersion" not in json.loads(stored.value)["metadata"]

    [(again, verdict)] = store.apply_many([pod("web")])
    assert verdict == "unchanged" and again["metadata"]["resourceVersion"] == meta["resourceVersion"]

    [(changed, verdict)] = store.apply_many([pod("web", image="httpd")])
    assert verdict == "configured"
    assert changed["metadata"]["uid"] == meta["uid"] and changed["metadata"]["generation"] == 2
    assert int(changed["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])

    # Metadata-only changes are "configured" but do not bump the generation.
    [(labelled, verdict)] = store.apply_many([pod("web", image="httpd", labels={"app": "web"})])
    assert verdict == "configured" and labelled["metadata"]["generation"] == 2
    assert store.get("core", "Pod", "default", "web") == labelled


def test_user_supplied_store_fields_are_ignored(store: ResourceStore) -> None:
    [(obj, _)] = store.apply_many([pod("p", uid="mine", resourceVersion="999", generation=7)])
    assert obj["metadata"]["uid"] != "mine" and obj["metadata"]["generation"] == 1
    assert obj["metadata"]["resourceVersion"] != "999"


def test_get_list_and_cluster_scoped_layout(store: ResourceStore, client: EtcdClient) -> None:
    store.apply_many([pod("a"), pod("b"), pod("c", ns="other"), cnp("global")])
    assert store.get("core", "Pod", "default", "missing") is None
    pods, rev = store.list("core", "Pod")
    assert [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods] == [
        ("default", "a"), ("default", "b"), ("other", "c")]
    assert rev >= max(int(p["metadata"]["resourceVersion"]) for p in pods)
    assert [p["metadata"]["name"] for p in store.list("core", "Pod", "other")[0]] == ["c"]
    key = f"/membrane/{store.layout.cluster}/resources/cilium.io/CiliumClusterwideNetworkPolicy/_/global"
    assert client.get(key) is not None
    assert store.get("cilium.io", "CiliumClusterwideNetworkPolicy", "", "global")["metadata"]["name"] == "global"


def test_apply_keeps_status_owned_by_controllers(store: ResourceStore) -> None:
    store.apply_many([pod("p")])
    store.update_status("core", "Pod", "default", "p", {"phase": "Running", "podIP": "10.0.1.5"})
    [(obj, verdict)] = store.apply_many([pod("p")])
    assert verdict == "unchanged" and obj["status"]["phase"] == "Running"
    [(obj, verdict)] = store.apply_many([pod("p", image="other")])
    assert verdict == "configured" and obj["status"]["podIP"] == "10.0.1.5"


class RacingClient(EtcdClient):
    """Writes ``race_key`` behind the store's back just before its first guarded transaction."""

    def __init__(self, endpoint: str, race_key: str, races: int = 1) -> None:
        super().__init__(endpoint)
        self.race_key = race_key
        self.races = races

    def txn(self, compare, success, failure=None):
        if compare and self.races > 0:
            self.races -= 1
            self.put(self.race_key, json.dumps(pod("b", image="sneaky")))
        return super().txn(compare, success, failure)


def test_apply_many_is_all_or_nothing(etcd_server: EtcdServer, store: ResourceStore) -> None:  # noqa: F811
    store.apply_many([pod("b")])
    racing = RacingClient(etcd_server.endpoint, store.path(("core", "Pod", "default", "b")), races=10)
    rs = ResourceStore(racing, store.layout.cluster, retries=3)
    with pytest.raises(ConflictError, match="kept changing concurrently"):
        rs.apply_many([pod("a"), pod("b", image="mine")])
    # The first object was fine, but the second conflicted: nothing of the apply was stored.
    assert store.get("core", "Pod", "default", "a") is None
    assert store.get("core", "Pod", "default", "b")["spec"]["containers"][0]["image"] == "sneaky"
    racing.close()


def test_apply_many_retries_a_conflict(etcd_server: EtcdServer, store: ResourceStore) -> None:  # noqa: F811
    store.apply_many([pod("b")])
    racing = RacingClient(etcd_server.endpoint, store.path(("core", "Pod", "default", "b")), races=1)
    rs = ResourceStore(racing, store.layout.cluster, retries=3)
    result = rs.apply_many([pod("a"), pod("b", image="mine")])
    assert [v for _, v in result] == ["created", "configured"]
    assert result[0][0]["metadata"]["resourceVersion"] == result[1][0]["metadata"]["resourceVersion"]
    assert store.get("core", "Pod", "default", "b")["spec"]["containers"][0]["image"] == "mine"
    racing.close()


def test_bad_object_stores_nothing(store: ResourceStore) -> None:
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x/y", "namespace": "default"}}
    with pytest.raises(ValidationError, match=r"objects\[1\]: name 'x/y' must not contain '/'"):
        store.apply_many([pod("fine"), bad])
    assert store.list("core", "Pod")[0] == []
    with pytest.raises(ValidationError, match=r"Pod.core default/p appears twice \(objects\[0\] and objects\[2\]\)"):
        store.apply_many([pod("p"), pod("q"), pod("p", image="x")])
    assert store.list("core", "Pod")[0] == []


def test_transaction_limit(client: EtcdClient, store: ResourceStore) -> None:
    small = ResourceStore(client, store.layout.cluster, max_txn_ops=3)
    with pytest.raises(StoreError, match="4 objects exceeds the store's transaction limit of 3"):
        small.apply_many([pod(f"p{i}") for i in range(4)])
    assert store.list("core", "Pod")[0] == []
    assert [v for _, v in small.apply_many([pod(f"p{i}") for i in range(3)])] == ["created"] * 3


def test_reads_are_chunked_by_the_txn_limit(client: EtcdClient, store: ResourceStore) -> None:
    # 150 objects are more gets than one etcd txn (128) allows: reads must be split.
    big = ResourceStore(client, store.layout.cluster, max_txn_ops=128)
    objs = [pod(f"p{i:03}") for i in range(120)]
    assert {v for _, v in big.apply_many(objs)} == {"created"}
    assert {v for _, v in big.apply_many(objs)} == {"unchanged"}
    assert len(big._read_many([big.path(("core", "Pod", "default", f"x{i}")) for i in range(300)])) == 300


def test_delete_many(store: ResourceStore) -> None:
    store.apply_many([pod("a"), cnp("g")])
    keys = [ResourceKey("core", "Pod", "default", "a"), ("cilium.io", "CiliumClusterwideNetworkPolicy", "_", "g"),
            ("core", "Pod", "default", "never")]
    assert store.delete_many(keys) == [True, True, False]
    assert store.get("core", "Pod", "default", "a") is None
    assert store.delete_many([]) == []


def test_put_object_compare_and_swap(store: ResourceStore) -> None:
    created = store.put_object(pod("p"), expected_revision=0)
    rv = int(created["metadata"]["resourceVersion"])
    with pytest.raises(ConflictError, match="expected resourceVersion 0"):
        store.put_object(pod("p"), expected_revision=0)
    updated = store.put_object(pod("p", image="v2"), expected_revision=rv)
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    with pytest.raises(ConflictError, match=f"expected resourceVersion {rv}, found"):
        store.put_object(pod("p", image="v3"), expected_revision=rv)
    assert store.get("core", "Pod", "default", "p")["spec"]["containers"][0]["image"] == "v2"
    # Without an expected revision the write goes through.
    assert store.put_object(pod("p", image="v4"))["metadata"]["generation"] == 3


def test_update_status_and_update(store: ResourceStore) -> None:
    with pytest.raises(NotFound, match="Pod.core default/nope does not exist"):
        store.update_status("core", "Pod", "default", "nope", {"phase": "Running"})
    [(obj, _)] = store.apply_many([pod("p")])
    st = store.update_status("core", "Pod", "default", "p", {"phase": "Pending"},
                             expected_revision=int(obj["metadata"]["resourceVersion"]))
    assert st["status"] == {"phase": "Pending"} and st["metadata"]["generation"] == 1
    with pytest.raises(ConflictError):
        store.update_status("core", "Pod", "default", "p", {"phase": "x"},
                            expected_revision=int(obj["metadata"]["resourceVersion"]))

    def relabel(o: dict[str, Any]) -> None:
        o["metadata"].setdefault("labels", {})["x"] = "y"

    out = store.update(("core", "Pod", "default", "p"), relabel)
    assert out["metadata"]["labels"] == {"x": "y"} and out["status"] == {"phase": "Pending"}
    with pytest.raises(ValidationError, match="must not change"):
        store.update(("core", "Pod", "default", "p"), lambda o: {**o, "metadata": {**o["metadata"], "name": "q"}})


def test_corrupt_stored_value(store: ResourceStore, client: EtcdClient) -> None:
    path = store.path(("core", "Pod", "default", "bad"))
    client.put(path, b"{not json")
    with pytest.raises(StoreError, match=f"{path}: stored value is not JSON"):
        store.get("core", "Pod", "default", "bad")


def test_apply_refused_by_check_update_stores_nothing(store: ResourceStore, client: EtcdClient) -> None:
    from membrane.model.update import check_update

    bound = pod("web")
    bound["spec"]["nodeName"] = "k8s-w1"
    [(first, _)] = store.apply_many([bound], check_update=check_update)
    moved = pod("web")
    moved["spec"]["nodeName"] = "k8s-w2"
    with pytest.raises(ValidationError, match='spec.nodeName: Invalid value: "k8s-w2": field is immutable'):
        store.apply_many([cnp("other"), moved], check_update=check_update)
    after = store.get("core", "Pod", "default", "web")
    assert after is not None and after["spec"]["nodeName"] == "k8s-w1"
    assert after["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert store.get("cilium.io", "CiliumClusterwideNetworkPolicy", "", "other") is None


def test_replace_many_is_compare_and_swap_per_object_as_put_object_stores(store: ResourceStore) -> None:
    """The lab kubelet binds a burst of pods with it: one object changed after it was read must not
    take the others' writes with it, and what is stored is what put_object stores."""
    store.apply_many([pod("a"), pod("b"), pod("c")])
    a, b, c = (store.get("core", "Pod", "default", n) for n in "abc")
    assert a is not None and b is not None and c is not None
    store.apply_many([pod("b", image="redis")])  # b changes after it was read
    bound = [(o, {**o, "spec": {**o["spec"], "nodeName": "n1"}}) for o in (a, b, c)]
    assert store.replace_many(bound) == [True, False, True]
    a2, b2 = store.get("core", "Pod", "default", "a"), store.get("core", "Pod", "default", "b")
    assert a2 is not None and b2 is not None
    assert a2["spec"]["nodeName"] == "n1" and "nodeName" not in b2["spec"]
    assert a2["metadata"]["uid"] == a["metadata"]["uid"] and a2["metadata"]["generation"] == 2  # spec changed
    via_put = store.put_object({**c, "metadata": {**c["metadata"], "resourceVersion": None},
                                "spec": {**c["spec"], "nodeName": "n1"}})
    assert via_put["metadata"]["generation"] == 2  # put_object agrees: unchanged object, same generation
    with pytest.raises(ValidationError, match="cannot change a key"):
        store.replace_many([(a2, {**a2, "metadata": {**a2["metadata"], "name": "other"}})])


def test_replace_many_creates_where_nothing_was_read_and_get_many_reads_many(store: ResourceStore) -> None:
    """``read`` None is a create (compare-and-swap on "no object"): the event recorder writes new and
    aggregated events in one transaction with it. A create whose key exists meanwhile is refused."""
    store.apply_many([pod("a")])
    a = store.get("core", "Pod", "default", "a")
    assert a is not None
    assert store.get_many([("core", "Pod", "default", "a"), ("core", "Pod", "default", "b")]) == [a, None]
    assert store.replace_many([(None, pod("b")), (a, pod("a", image="httpd"))]) == [True, True]
    assert store.replace_many([(None, pod("c")), (None, pod("a", image="redis"))]) == [True, False]
    b, a2, c = store.get_many([("core", "Pod", "default", n) for n in "bac"])
    assert b is not None and a2 is not None and c is not None
    assert b["metadata"]["generation"] == 1 and b["metadata"]["uid"] and b["metadata"]["creationTimestamp"]
    assert a2["spec"]["containers"][0]["image"] == "httpd" and a2["metadata"]["uid"] == a["metadata"]["uid"]


def test_update_statuses_stores_the_status_and_leaves_its_inputs_alone(store: ResourceStore) -> None:
    """It encodes shallow copies (the lab kubelet's decoded pods are shared between its passes)."""
    store.apply_many([pod("a")])
    a = store.get("core", "Pod", "default", "a")
    assert a is not None
    before, status = json.dumps(a, sort_keys=True), {"phase": "Running", "conditions": [{"type": "Ready"}]}
    assert store.update_statuses([(a, status)]) == [True]
    assert json.dumps(a, sort_keys=True) == before and status == {"phase": "Running", "conditions": [{"type": "Ready"}]}
    stored = store.get("core", "Pod", "default", "a")
    assert stored is not None and stored["status"] == status
    assert int(stored["metadata"]["resourceVersion"]) > int(a["metadata"]["resourceVersion"])
    raw = store.client.get(store.path(("core", "Pod", "default", "a")))
    assert raw is not None and b"resourceVersion" not in raw.value
