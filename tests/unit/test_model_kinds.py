"""The kind registry and kubectl-style resource names."""

from __future__ import annotations

import pytest

from membrane.model.errors import ValidationError
from membrane.model.kinds import KINDS, kind_by_name, kind_for_manifest, lookup_kind


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("po", "Pod"), ("pods", "Pod"), ("pod", "Pod"), ("Pod", "Pod"), ("PODS", "Pod"),
        ("deploy", "Deployment"), ("deployments", "Deployment"), ("deployment", "Deployment"),
        ("deployments.apps", "Deployment"),
        ("ns", "Namespace"), ("namespaces", "Namespace"),
        ("no", "Node"), ("nodes", "Node"), ("node", "Node"),
        ("svc", "Service"), ("services", "Service"),
        ("ep", "Endpoints"), ("endpoints", "Endpoints"),
        ("endpointslices", "EndpointSlice"), ("endpointslices.discovery.k8s.io", "EndpointSlice"),
        ("cnp", "CiliumNetworkPolicy"), ("ciliumnetworkpolicies", "CiliumNetworkPolicy"),
        ("ciliumnp", "CiliumNetworkPolicy"), ("CiliumNetworkPolicy", "CiliumNetworkPolicy"),
        ("ciliumnetworkpolicies.cilium.io", "CiliumNetworkPolicy"),
        ("ccnp", "CiliumClusterwideNetworkPolicy"),
        ("ciliumclusterwidenetworkpolicies", "CiliumClusterwideNetworkPolicy"),
        ("netpol", "NetworkPolicy"), ("networkpolicies", "NetworkPolicy"),
        ("networkpolicies.networking.k8s.io", "NetworkPolicy"),
    ],
)
def test_lookup_kind_accepts_kubectl_names(name, kind):
    assert lookup_kind(name).kind == kind


@pytest.mark.parametrize("name", ["foo", "endpoint", "endpointslices.core", "deployments.core", "pods.apps", "", "p"])
def test_lookup_kind_rejects_unknown_names_like_kubectl(name):
    with pytest.raises(ValidationError) as exc:
        lookup_kind(name)
    assert str(exc.value) == f'the server doesn\'t have a resource type "{name}"'


def test_kind_attributes():
    node = lookup_kind("no")
    assert (node.api_version, node.group, node.namespaced, node.read_only) == ("v1", "core", False, True)
    deploy = lookup_kind("deploy")
    assert (deploy.api_version, deploy.group, deploy.plural, deploy.namespaced) == (
        "apps/v1", "apps", "deployments", True)
    ccnp = lookup_kind("ccnp")
    assert (ccnp.api_version, ccnp.group, ccnp.namespaced) == ("cilium.io/v2", "cilium.io", False)
    assert lookup_kind("cnp").namespaced
    assert lookup_kind("netpol").group == "networking.k8s.io"
    assert [k.kind for k in KINDS if k.read_only] == ["Node", "Endpoints", "EndpointSlice", "CiliumBGPNodeConfig",
                                                     "Lease", "Event"]
    assert {k.group for k in KINDS if k.api_version == "v1"} == {"core"}


def test_names_are_unambiguous():
    seen = [name for info in KINDS for name in info.names]
    assert len(seen) == len(set(seen))


def test_kind_by_name_is_exact():
    assert kind_by_name("Pod").plural == "pods"
    assert kind_by_name("pod") is None


def error(api_version, kind) -> str:
    with pytest.raises(ValidationError) as exc:
        kind_for_manifest(api_version, kind)
    return str(exc.value)


def test_kind_for_manifest():
    assert kind_for_manifest("apps/v1", "Deployment").kind == "Deployment"
    assert error("v1", None) == "kind: Required value"
    assert error(None, "Pod") == "apiVersion: Required value"
    assert error("v1", "Foo").startswith('kind: no matches for kind "Foo" in version "v1"; supported kinds: ')
    assert error("v1", "pod") == 'kind: no matches for kind "pod" in version "v1"; did you mean "Pod"?'
    assert error("v1", "Deployment") == (
        'apiVersion: no matches for kind "Deployment" in version "v1" (Deployment is served as apps/v1)'
    )
    assert error("cilium.io/v1", "CiliumNetworkPolicy").startswith("apiVersion: ")
    assert error("v1", 3) == "kind: Invalid value: 3: must be a string"
