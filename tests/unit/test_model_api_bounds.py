"""Admission as strict as the API server (issue 18 item 3): integer widths, name lengths, frozen fields."""

from __future__ import annotations

import copy

import pytest

from membrane.model.errors import ValidationError
from membrane.model.update import check_update
from membrane.model.validate import validate_object

BIG = 100000000000000000000  # the issue's replicas value: does not fit Kubernetes' int32


def pod(name: str = "web", **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "nginx"}], **spec}}


def deployment(replicas=1, selector=None) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": selector or {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
    }


def service(name: str = "web", **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}], **spec}}


def error(obj: dict) -> str:
    with pytest.raises(ValidationError) as exc:
        validate_object(obj, "x.yaml:doc 1")
    return str(exc.value)


# ---- int32 / int64 fields ----

def test_replicas_beyond_int32_is_refused_with_the_range():
    assert error(deployment(replicas=BIG)) == (
        f"x.yaml:doc 1: spec.replicas: Invalid value: {BIG}: must be between 0 and 2147483647, inclusive"
    )
    assert error(deployment(replicas=2**31)).endswith("must be between 0 and 2147483647, inclusive")
    assert error(deployment(replicas=1e20)).startswith("x.yaml:doc 1: spec.replicas: Invalid value: ")
    assert validate_object(deployment(replicas=2**31 - 1), "x")["spec"]["replicas"] == 2**31 - 1


@pytest.mark.parametrize("path, obj", [
    ("spec.containers[0].ports[0].containerPort",
     pod(containers=[{"name": "c", "image": "i", "ports": [{"containerPort": BIG}]}])),
    ("spec.containers[0].ports[0].hostPort",
     pod(containers=[{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": BIG}]}])),
    ("spec.priority", pod(priority=-BIG)),
    ("spec.ports[0].port", service(ports=[{"port": BIG}])),
    ("spec.ports[0].nodePort", service(type="NodePort", ports=[{"port": 80, "nodePort": BIG}])),
    ("spec.ports[0].targetPort", service(ports=[{"port": 80, "targetPort": BIG}])),
    ("spec.minReadySeconds", {**deployment(), "spec": {**deployment()["spec"], "minReadySeconds": BIG}}),
])
def test_int32_fields_are_bounded(path, obj):
    message = error(obj)
    assert message.startswith(f"x.yaml:doc 1: {path}: Invalid value: "), message
    assert "must be" in message


def test_int64_fields_take_int64_values_but_no_more():
    ok = validate_object(pod(terminationGracePeriodSeconds=2**40, activeDeadlineSeconds=2**40), "x")
    assert ok["spec"]["terminationGracePeriodSeconds"] == 2**40
    assert error(pod(activeDeadlineSeconds=2**63)).endswith(
        f"spec.activeDeadlineSeconds: Invalid value: {2**63}: must be between 1 and {2**63 - 1}, inclusive"
    )


# ---- name lengths per kind ----

@pytest.mark.parametrize("kind_obj, limit", [
    (pod, 253),            # DNS-1123 subdomain
    (deployment, 253),
    (service, 63),         # DNS-1035 label
])
def test_name_length_per_kind(kind_obj, limit):
    obj = kind_obj()
    obj["metadata"]["name"] = "a" * limit
    assert validate_object(obj, "x")["metadata"]["name"] == "a" * limit
    obj["metadata"]["name"] = "a" * (limit + 1)
    assert error(obj).endswith(f"must be no more than {limit} characters")


def test_namespace_names_are_labels():
    obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n" * 64}}
    assert error(obj).endswith("must be no more than 63 characters")
    assert error({**pod(), "metadata": {"name": "p", "namespace": "n" * 64}}).endswith(
        "metadata.namespace: Invalid value: \"" + "n" * 64 + "\": must be no more than 63 characters")


# ---- fields frozen once set (check_update) ----

def update_error(old: dict, new: dict) -> str:
    old, new = validate_object(old, ""), validate_object(new, "")
    with pytest.raises(ValidationError) as exc:
        check_update(old, new)
    return str(exc.value)


def test_pod_node_name_is_immutable_once_bound():
    assert update_error(pod(nodeName="k8s-w1"), pod(nodeName="k8s-w2")) == (
        'spec.nodeName: Invalid value: "k8s-w2": field is immutable'
    )
    check_update(validate_object(pod(), ""), validate_object(pod(nodeName="k8s-w1"), ""))  # binding
    check_update(validate_object(pod(nodeName="k8s-w1"), ""), validate_object(pod(), ""))  # apply keeps it
    same = validate_object(pod(nodeName="k8s-w1"), "")
    check_update(same, copy.deepcopy(same))


def test_deployment_selector_is_immutable():
    message = update_error(deployment(), deployment(selector={"matchLabels": {"app": "web", "tier": "fe"}}))
    assert message.startswith("spec.selector: Invalid value: ") and message.endswith(": field is immutable")
    check_update(validate_object(deployment(), ""), validate_object(deployment(replicas=5), ""))


def test_service_cluster_ip_is_immutable_once_set():
    assert update_error(service(clusterIP="10.96.0.20"), service(clusterIP="10.96.0.21")) == (
        'spec.clusterIP: Invalid value: "10.96.0.21": field is immutable'
    )
    assert update_error(service(clusterIP="None"), service(clusterIP="10.96.0.21")).endswith("field is immutable")
    check_update(validate_object(service(clusterIP="10.96.0.20"), ""), validate_object(service(), ""))
    check_update(validate_object(service(), ""), validate_object(service(clusterIP="10.96.0.20"), ""))
    external = service(type="ExternalName", externalName="example.com", ports=[])
    check_update(validate_object(service(clusterIP="10.96.0.20"), ""), validate_object(external, ""))


def test_other_kinds_and_kind_changes_have_no_frozen_fields():
    ns = validate_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}, "")
    check_update(ns, copy.deepcopy(ns))
    check_update(validate_object(pod(nodeName="a"), ""), validate_object(service(), ""))


# ---- found by tests/unit/test_fuzz_inputs.py ----

@pytest.mark.parametrize("port", ["²", "٣", "9" * 5000])
def test_policy_port_strings_that_are_not_ascii_decimals(port):
    cnp = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "p"},
           "spec": {"endpointSelector": {}, "ingress": [{"toPorts": [{"ports": [{"port": port}]}]}]}}
    assert error(cnp).startswith("x.yaml:doc 1: spec.ingress[0].toPorts[0].ports[0].port: Invalid value: ")


def test_kinds_without_validation_rules_are_refused_even_for_the_cluster():
    endpoints = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"}}
    with pytest.raises(ValidationError, match="kind: Forbidden: Endpoints objects are written by the cluster"):
        validate_object(endpoints, "", allow_read_only=True)
