"""validate_object: the envelope (apiVersion/kind, metadata, namespaces), error shape, no side effects."""

from __future__ import annotations

import copy

import pytest

from membrane.model.errors import ValidationError
from membrane.model.loader import load_located
from membrane.model.validate import validate_documents, validate_object


def pod(**meta) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", **meta},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }


def error(obj, where="demo.yaml:doc 1", namespace="default", **kwargs) -> str:
    before = copy.deepcopy(obj)
    with pytest.raises(ValidationError) as exc:
        validate_object(obj, where, namespace, **kwargs)
    assert obj == before, "a failed validation must not modify its input"
    return str(exc.value)


def test_error_shape_is_where_field_reason():
    obj = pod()
    del obj["spec"]["containers"][0]["image"]
    assert error(obj, "demo.yaml:doc 2") == "demo.yaml:doc 2: spec.containers[0].image: Required value"


def test_error_without_where_has_no_prefix():
    obj = pod()
    obj["metadata"]["name"] = ""
    assert error(obj, "") == "metadata.name: Required value"


def test_result_is_a_normalised_copy():
    obj = pod()
    out = validate_object(obj, "x")
    assert out is not obj and out["metadata"] is not obj["metadata"]
    assert obj == pod()
    assert out["metadata"] == {"name": "web", "namespace": "default", "labels": {}, "annotations": {}}


def test_validation_is_idempotent():
    out = validate_object(pod(labels={"a": "b"}), "x", "team")
    assert validate_object(out, "x", "other") == out


def test_namespace_is_filled_for_namespaced_kinds():
    assert validate_object(pod(), "x", "team")["metadata"]["namespace"] == "team"
    assert validate_object(pod(namespace="mine"), "x", "team")["metadata"]["namespace"] == "mine"
    assert validate_object(pod(namespace=None), "x", "team")["metadata"]["namespace"] == "team"


def test_enforced_namespace_must_match():
    assert validate_object(pod(namespace="team"), "x", "team", enforce_namespace=True)
    assert validate_object(pod(), "x", "team", enforce_namespace=True)["metadata"]["namespace"] == "team"
    assert error(pod(namespace="mine"), "x", "team", enforce_namespace=True) == (
        'x: metadata.namespace: Invalid value: "mine": the namespace from the provided object does not match '
        "the namespace 'team'; pass --namespace=mine to use it"
    )


def test_cluster_scoped_kinds_drop_the_namespace():
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team", "namespace": "default"}}
    out = validate_object(ns, "x")
    assert "namespace" not in out["metadata"]
    ccnp = {"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy",
            "metadata": {"name": "p", "namespace": "x"},
            "spec": {"endpointSelector": {}, "ingress": [{}]}}
    assert "namespace" not in validate_object(ccnp, "x")["metadata"]


def test_invalid_namespace_name():
    assert error(pod(namespace="Team")).startswith(
        'demo.yaml:doc 1: metadata.namespace: Invalid value: "Team": a lowercase RFC 1123 label'
    )


def test_namespace_kind_gets_its_name_label():
    out = validate_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}, "x")
    assert out["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team"}
    spoofed = {"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "team", "labels": {"kubernetes.io/metadata.name": "other", "a": "b"}}}
    assert validate_object(spoofed, "x")["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team", "a": "b"}
    assert error({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}}).startswith(
        'demo.yaml:doc 1: metadata.name: Invalid value: "a.b": a lowercase RFC 1123 label'
    )
    assert error({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}, "spec": {"x": 1}}) == (
        'demo.yaml:doc 1: spec: unknown field "spec.x"'
    )


def test_node_is_read_only():
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}}
    assert error(node) == (
        "demo.yaml:doc 1: kind: Forbidden: Node objects are managed by the cluster (registered by each node's "
        "agent); they cannot be applied or deleted"
    )
    node["spec"] = {"podCIDR": "10.0.1.0/24", "podCIDRs": ["10.0.1.0/24"]}
    out = validate_object(node, "x", allow_read_only=True)
    assert "namespace" not in out["metadata"]
    node["spec"]["podCIDR"] = "10.0.1.0"
    assert error(node, allow_read_only=True).startswith('demo.yaml:doc 1: spec.podCIDR: Invalid value: "10.0.1.0"')


def test_envelope_errors():
    assert error(["not", "a", "mapping"]) == (
        "demo.yaml:doc 1: Invalid value: list: a manifest must be an object with apiVersion and kind"
    )
    obj = pod()
    del obj["kind"]
    assert error(obj) == "demo.yaml:doc 1: kind: Required value"
    obj = pod()
    obj["apiVersion"] = "apps/v1"
    assert error(obj) == (
        'demo.yaml:doc 1: apiVersion: no matches for kind "Pod" in version "apps/v1" (Pod is served as v1)'
    )
    obj = pod()
    obj["kind"] = "Widget"
    assert error(obj).startswith('demo.yaml:doc 1: kind: no matches for kind "Widget" in version "v1"')


def test_unknown_top_level_field():
    obj = pod()
    obj["extra"] = 1
    assert error(obj) == 'demo.yaml:doc 1: unknown field "extra"'
    obj = pod()
    obj["specs"] = []
    assert error(obj) == 'demo.yaml:doc 1: unknown field "specs"'


def test_unknown_metadata_field():
    assert error(pod(nmae="x")) == 'demo.yaml:doc 1: metadata: unknown field "metadata.nmae"'


def test_metadata_name_rules():
    obj = pod()
    del obj["metadata"]
    assert error(obj) == "demo.yaml:doc 1: metadata.name: Required value"
    obj = pod()
    obj["metadata"]["name"] = "Web"
    assert error(obj).startswith(
        'demo.yaml:doc 1: metadata.name: Invalid value: "Web": a lowercase RFC 1123 subdomain must consist of'
    )
    obj["metadata"]["name"] = 42
    assert error(obj) == 'demo.yaml:doc 1: metadata.name: Invalid value: 42: must be a string, not integer (quote it in YAML)'
    obj["metadata"]["name"] = "a" * 254
    assert error(obj).endswith("must be no more than 253 characters")


def test_labels_and_annotations():
    out = validate_object(pod(labels={"app": "web"}, annotations={"note": "any text at all!"}), "x")
    assert out["metadata"]["labels"] == {"app": "web"}
    assert out["metadata"]["annotations"] == {"note": "any text at all!"}
    assert error(pod(labels={"app": "a b"})).startswith('demo.yaml:doc 1: metadata.labels.app: Invalid value: "a b"')
    assert error(pod(labels={"a/b/c": "x"})).startswith(
        'demo.yaml:doc 1: metadata.labels: Invalid value: "a/b/c": a qualified name may contain at most one'
    )
    assert error(pod(annotations={"bad key": "x"})).startswith(
        'demo.yaml:doc 1: metadata.annotations: Invalid value: "bad key"'
    )
    assert error(pod(annotations={"n": 1})) == (
        "demo.yaml:doc 1: metadata.annotations.n: Invalid value: 1: must be a string, not integer (quote it in YAML)"
    )
    assert error(pod(annotations={"big": "x" * (256 * 1024)})) == (
        "demo.yaml:doc 1: metadata.annotations: Too long: may not be more than 262144 bytes"
    )


def test_other_metadata_fields_are_accepted():
    meta = {"uid": "1234", "resourceVersion": "17", "generation": 2, "creationTimestamp": "2024-01-01T00:00:00Z",
            "finalizers": ["x"], "generateName": "web-",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "u",
                                 "controller": True, "blockOwnerDeletion": True}]}
    out = validate_object(pod(**meta), "x")
    assert out["metadata"]["ownerReferences"][0]["name"] == "d"
    assert error(pod(ownerReferences=[{"kind": "Deployment", "name": "d"}])) == (
        "demo.yaml:doc 1: metadata.ownerReferences[0].apiVersion: Required value"
    )
    assert error(pod(resourceVersion=17)).startswith("demo.yaml:doc 1: metadata.resourceVersion: Invalid value: 17")


def test_status_must_be_an_object():
    obj = pod()
    obj["status"] = {"phase": "Running"}
    assert validate_object(obj, "x")["status"] == {"phase": "Running"}
    obj["status"] = "Running"
    assert error(obj) == 'demo.yaml:doc 1: status: Invalid value: "Running": must be an object, not string'


def test_validate_documents_uses_each_documents_location():
    text = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: i}]}\n---\n---\n"
        "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec: {containers: [{name: c}]}\n"
    )
    with pytest.raises(ValidationError) as exc:
        validate_documents(load_located(text, "demo.yaml"))
    assert str(exc.value) == "demo.yaml:doc 3: spec.containers[0].image: Required value"
    good = validate_documents(load_located(text.split("---")[0], "demo.yaml"), "team")
    assert good[0]["metadata"]["namespace"] == "team"


def test_list_item_location_in_errors():
    text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: 1svc}\n"
    with pytest.raises(ValidationError) as exc:
        validate_documents(load_located(text, "l.yaml"))
    assert str(exc.value).startswith('l.yaml:doc 1: items[0]: metadata.name: Invalid value: "1svc": a DNS-1035 label')
