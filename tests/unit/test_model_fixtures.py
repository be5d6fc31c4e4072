"""Realistic tutorial manifests must validate as published, with the expected normalisation."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from membrane.cli.manifests import load_paths
from membrane.model.deployment import pod_template_hash, pods_for_deployment
from membrane.model.labels import LabelSelector
from membrane.model.validate import validate_documents, validate_object

FIXTURES = Path(__file__).parent / "fixtures" / "model"


def load(name: str) -> list[dict]:
    return validate_documents(load_paths([str(FIXTURES / name)]))


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.yaml")), ids=lambda p: p.name)
def test_fixture_validates_and_is_a_fixed_point(path):
    objects = validate_documents(load_paths([str(path)]))
    assert objects
    for obj in objects:
        assert validate_object(obj, "again") == obj


def test_starwars_app():
    svc, deathstar, tiefighter, xwing = load("starwars-http-sw-app.yaml")
    assert (svc["kind"], deathstar["kind"], tiefighter["kind"], xwing["kind"]) == ("Service", "Deployment", "Pod", "Pod")
    assert svc["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert svc["spec"]["type"] == "ClusterIP"
    selector = LabelSelector.from_labels(svc["spec"]["selector"])
    pods, _ = pods_for_deployment(deathstar, [], random.Random(0))
    assert len(pods) == 2
    assert all(selector.matches(p["metadata"]["labels"]) for p in pods)
    assert not selector.matches(tiefighter["metadata"]["labels"])
    assert pods[0]["metadata"]["name"].startswith(f"deathstar-{pod_template_hash(deathstar['spec']['template'])}-")


def test_starwars_policy_selects_the_right_pods():
    (rule1,) = load("starwars-rule1-l3-l4.yaml")
    _, deathstar, tiefighter, xwing = load("starwars-http-sw-app.yaml")
    subject = LabelSelector.from_dict(rule1["spec"]["endpointSelector"])
    peer = LabelSelector.from_dict(rule1["spec"]["ingress"][0]["fromEndpoints"][0])
    assert subject.matches(deathstar["spec"]["template"]["metadata"]["labels"])
    assert peer.matches(tiefighter["metadata"]["labels"])
    assert not peer.matches(xwing["metadata"]["labels"])
    (l7,) = load("starwars-rule1-l7.yaml")
    assert l7["spec"]["ingress"][0]["toPorts"][0]["rules"]["http"] == [{"method": "POST", "path": "/v1/request-landing"}]


def test_policies_are_unchanged_apart_from_metadata():
    raw = load_paths([str(FIXTURES / "cilium-api-policy.yaml")])[0].obj
    (out,) = load("cilium-api-policy.yaml")
    assert out["spec"] == raw["spec"]
    assert out["metadata"] == {"name": "api-policy", "namespace": "shop", "labels": {}, "annotations": {}}


def test_whoami_named_target_port():
    deploy, svc = load("traefik-whoami.yaml")
    assert deploy["spec"]["replicas"] == 2
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}]


def test_network_policy_fixture_keeps_its_rules():
    (np,) = load("networkpolicy-ipblock.yaml")
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert np["spec"]["ingress"][0]["from"][0] == {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}}
    assert np["spec"]["egress"][0]["ports"] == [{"protocol": "TCP", "port": 5978}]


def test_clusterwide_fixture():
    ccnp, cnp = load("cilium-clusterwide.yaml")
    assert "namespace" not in ccnp["metadata"]
    assert cnp["metadata"]["namespace"] == "default"
    assert len(cnp["specs"]) == 2


def test_directory_load_covers_every_fixture():
    objects = validate_documents(load_paths([str(FIXTURES)]))
    kinds = {o["kind"] for o in objects}
    assert kinds == {"Service", "Deployment", "Pod", "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy",
                     "NetworkPolicy", "CiliumLoadBalancerIPPool", "CiliumL2AnnouncementPolicy"}
