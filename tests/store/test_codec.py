"""Pure parts of membrane.store (no etcd): endpoints, key ranges, txn encoding, layout, object keys."""

from __future__ import annotations

import base64

import pytest

from membrane.model.errors import ValidationError
from membrane.store.kv import kv_from_json, prefix_range_end
from membrane.store.layout import ResourceKey, StoreLayout, group_of
from membrane.store.resources import key_of
from membrane.store.transport import parse_endpoint
from membrane.store.txn import Compare, Op, mod_revision_eq, txn_request, value_eq, version_eq


def b64(s: bytes) -> str:
    return base64.b64encode(s).decode()


def test_parse_endpoint() -> None:
    ep = parse_endpoint("unix:///run/membrane/lab/etcd.sock:2379")
    assert ep.unix_path == "/run/membrane/lab/etcd.sock:2379"
    ep = parse_endpoint("http://127.0.0.1:12379")
    assert (ep.host, ep.port) == ("127.0.0.1", 12379)
    assert parse_endpoint("http://localhost").port == 2379
    assert parse_endpoint("http://[::1]:2379").host == "::1"


@pytest.mark.parametrize(("url", "why"), [
    ("unix://relative.sock", "must be absolute"),
    ("unix:///" + "x" * 120, "longer than 107"),
    ("https://h:1", "scheme must be"),
    ("http://h:port", "is not a number"),
    ("http://h:70000", "is not a number"),
    ("http://", "expected http://host:port"),
])
def test_parse_endpoint_errors(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_endpoint(url)


def test_prefix_range_end() -> None:
    assert prefix_range_end("/a/") == b64(b"/a0")
    assert base64.b64decode(prefix_range_end("")) == b"\0"


def test_prefix_range_end_drops_trailing_ff_bytes() -> None:
    key = b"a\xff\xff".decode("utf-8", errors="surrogateescape")
    assert base64.b64decode(prefix_range_end(key)) == b"b"


def test_kv_from_json_defaults() -> None:
    kv = kv_from_json({"key": b64(b"/k"), "mod_revision": "7"})
    assert kv.key == "/k" and kv.value == b"" and kv.mod_revision == 7 and kv.version == 0


def test_compare_builders_are_equivalent() -> None:
    assert (Compare.version("/k") == 0) == version_eq("/k", 0)
    assert (Compare.mod_revision("/k") == 5) == mod_revision_eq("/k", 5)
    assert (Compare.value("/k") == b"v") == value_eq("/k", "v")
    cmp = Compare.create_revision("/k") > 3
    assert cmp.result == "GREATER" and cmp.target == "CREATE"
    assert (Compare.version("/k") != 1).result == "NOT_EQUAL"
    assert Compare.mod_revision("/k", "=", 5) == mod_revision_eq("/k", 5)
    assert Compare.version("/k", "!=", 0) == (Compare.version("/k") != 0)
    assert Compare.value("/k", "==", b"v") == value_eq("/k", b"v")
    with pytest.raises(ValueError, match="operator '~' is not one of"):
        Compare.version("/k", "~", 0)


def test_txn_request_encoding() -> None:
    req = txn_request([version_eq("/k", 0), value_eq("/v", b"x")],
                      [Op.put("/k", "1", lease=9), Op.delete_prefix("/p/")], [Op.get("/k")])
    assert req["compare"][0] == {"key": b64(b"/k"), "target": "VERSION", "result": "EQUAL", "version": "0"}
    assert req["compare"][1]["value"] == b64(b"x")
    assert req["success"][0] == {"request_put": {"key": b64(b"/k"), "value": b64(b"1"), "lease": "9"}}
    assert req["success"][1] == {"request_delete_range": {"key": b64(b"/p/"), "range_end": b64(b"/p0")}}
    assert req["failure"] == [{"request_range": {"key": b64(b"/k")}}]


def test_compare_type_errors() -> None:
    with pytest.raises(TypeError, match="needs an int"):
        (Compare.version("/k") == "zero").to_json()
    with pytest.raises(TypeError, match="needs bytes"):
        (Compare.value("/k") == 3).to_json()


def test_layout_keys() -> None:
    lay = StoreLayout("default")
    key = ResourceKey("cilium.io", "CiliumNetworkPolicy", "team-a", "allow-dns")
    path = lay.resource_key(key)
    assert path == "/membrane/default/resources/cilium.io/CiliumNetworkPolicy/team-a/allow-dns"
    assert lay.parse_resource_key(path) == key
    assert lay.resource_prefix("core", "Pod", "default") == "/membrane/default/resources/core/Pod/default/"
    assert lay.resource_prefix("core") == "/membrane/default/resources/core/"
    assert lay.node_key("node-1") == "/membrane/default/nodes/node-1"
    assert lay.config_key == "/membrane/default/config"
    assert lay.ipcache_key("10.0.1.0/24") == "/membrane/default/ipcache/10.0.1.0%2F24"
    assert lay.parse_ipcache_key(lay.ipcache_key("10.0.1.0/24")) == "10.0.1.0/24"
    assert lay.ipam_key("pools", "default", "10.0.1.0/24") == "/membrane/default/ipam/pools/default/10.0.1.0%2F24"
    assert lay.identity_id_key(256) == "/membrane/default/identities/id/256"
    assert lay.identity_ref_key(256, "n1") == "/membrane/default/identities/refs/256/n1"
    assert lay.lease_key("operator") == "/membrane/default/leases/operator"


@pytest.mark.parametrize("bad", ["", "Default", "a/b", "-x"])
def test_layout_rejects_bad_cluster_names(bad: str) -> None:
    with pytest.raises(ValidationError, match="cluster name"):
        StoreLayout(bad)


def test_layout_rejects_bad_segments() -> None:
    lay = StoreLayout("c1")
    with pytest.raises(ValidationError, match="node name 'a/b' must not contain '/'"):
        lay.node_key("a/b")
    with pytest.raises(ValidationError, match="name must be a non-empty string"):
        ResourceKey("core", "Pod", "default", "")
    with pytest.raises(ValidationError, match="not under"):
        lay.parse_resource_key("/membrane/other/resources/core/Pod/default/x")
    with pytest.raises(ValidationError, match="namespace given without kind"):
        lay.resource_prefix("core", None, "default")
    with pytest.raises(ValidationError, match="positive integer"):
        lay.identity_id_key(0)


def test_group_of() -> None:
    assert group_of("v1") == "core"
    assert group_of("cilium.io/v2") == "cilium.io"
    assert group_of("apps/v1") == "apps"


def test_key_of_objects() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}}
    assert key_of(pod) == ResourceKey("core", "Pod", "ns", "p")
    ccnp = {"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy", "metadata": {"name": "x"}}
    assert key_of(ccnp) == ResourceKey("cilium.io", "CiliumClusterwideNetworkPolicy", "_", "x")


@pytest.mark.parametrize(("obj", "why"), [
    ([], "objects\\[3\\]: expected a mapping"),
    ({"kind": "Pod", "metadata": {"name": "p"}}, "objects\\[3\\]: apiVersion is required"),
    ({"apiVersion": "v1", "metadata": {"name": "p"}}, "kind is required"),
    ({"apiVersion": "v1", "kind": "Pod"}, "metadata is required"),
    ({"apiVersion": "v1", "kind": "Pod", "metadata": {}}, "objects\\[3\\]: name must be a non-empty string"),
    ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a/b"}}, "must not contain '/'"),
])
def test_key_of_errors_say_where(obj: object, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        key_of(obj, "objects[3]")
