"""Every accepted-but-not-enforced policy field is named with its path; enforced ones never are."""

from __future__ import annotations

from membrane.model.validate import validate_object
from membrane.policy.unenforced import (
    AUTH,
    HOST_POLICY,
    L7_RULES,
    REQUIRES,
    TLS_FIELD,
    Unenforced,
    unenforced_fields,
)


def policy(spec: dict | None = None, specs: list | None = None, kind: str = "CiliumNetworkPolicy") -> dict:
    meta = {"name": "p"} if kind == "CiliumClusterwideNetworkPolicy" else {"name": "p", "namespace": "default"}
    obj = {"apiVersion": "cilium.io/v2", "kind": kind, "metadata": meta}
    if spec is not None:
        obj["spec"] = spec
    if specs is not None:
        obj["specs"] = specs
    return validate_object(obj, "test")


SEL = {"matchLabels": {"app": "a"}}


def test_enforced_l3_l4_policy_has_no_notes():
    obj = policy({"endpointSelector": SEL,
                  "ingress": [{"fromEndpoints": [SEL], "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}]}],
                  "egress": [{"toCIDRSet": [{"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}]},
                             {"toEntities": ["world"]}, {"icmps": [{"fields": [{"type": 8}]}]}],
                  "egressDeny": [{"toCIDR": ["192.0.2.1/32"]}]})
    assert unenforced_fields(obj) == []


def test_each_unenforced_field_is_named_by_path():
    obj = policy(specs=[
        {"endpointSelector": SEL,
         "egress": [{"toFQDNs": [{"matchName": "x.example"}]},  # enforced: the DNS proxy learns its IPs
                    {"toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}],
                                  "rules": {"l7proto": "r2d2", "l7": [{"cmd": "READ"}]}}]},
                    {"toPorts": [{"ports": [{"port": "81", "protocol": "TCP"}], "rules": {"http": [{"path": "/"}]}}]},
                    {"toPorts": [{"ports": [{"port": "53", "protocol": "ANY"}], "rules": {"dns": [{"matchName": "a"}]}}]},
                    {"toPorts": [{"ports": [{"port": "9092", "protocol": "TCP"}], "rules": {"kafka": [{"role": "produce"}]}}]},
                    {"toServices": [{"k8sService": {"serviceName": "s", "namespace": "default"}}]},
                    {"toCIDRSet": [{"cidr": "10.0.0.0/8"}, {"cidrGroupRef": "g"}]}]},
        {"endpointSelector": SEL,
         "ingress": [{"fromEndpoints": [SEL], "fromRequires": [SEL], "authentication": {"mode": "required"}},
                     {"toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}], "serverNames": ["a.example"]}]},
                     {"toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}], "serverNames": ["a.example"],
                                   "rules": {"http": [{}]}}]}]},
    ])
    assert unenforced_fields(obj) == [
        Unenforced("specs[0].egress[1].toPorts[0].rules", L7_RULES),
        Unenforced("specs[1].ingress[0].fromRequires", REQUIRES),
        Unenforced("specs[1].ingress[0].authentication", AUTH),
        Unenforced("specs[1].ingress[2].toPorts[0].serverNames", TLS_FIELD),  # alone: the SNI proxy enforces it
    ]
    assert str(unenforced_fields(obj)[0]) == f"specs[0].egress[1].toPorts[0].rules: {L7_RULES}"


def test_disabled_authentication_is_enforced_as_written():
    obj = policy({"endpointSelector": SEL, "ingress": [{"fromEndpoints": [SEL], "authentication": {"mode": "disabled"}}]})
    assert unenforced_fields(obj) == []


def test_host_policy_is_named():
    obj = policy({"nodeSelector": {"matchLabels": {"role": "worker"}}, "ingress": [{"fromEntities": ["cluster"]}]},
                 kind="CiliumClusterwideNetworkPolicy")
    assert unenforced_fields(obj) == [Unenforced("spec.nodeSelector", HOST_POLICY)]


def test_other_kinds_have_none():
    assert unenforced_fields({"kind": "NetworkPolicy", "spec": {"egress": [{"toFQDNs": [1]}]}}) == []
