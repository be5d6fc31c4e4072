"""Cilium label model, pod identity labels (cilium-semantics §1.1-1.2) and the label filter (§1.3)."""

from __future__ import annotations

import pytest

from membrane.identity.labelfilter import FilterRule, LabelFilter
from membrane.identity.labels import (
    Label,
    LabelSet,
    cidr_label,
    endpoint_labels,
    pod_identity_labels,
)


def test_label_string_forms_round_trip() -> None:
    assert str(Label("k8s", "app", "web")) == "k8s:app=web"
    assert str(Label("reserved", "host")) == "reserved:host"
    assert Label.parse("k8s:app=web") == Label("k8s", "app", "web")
    assert Label.parse("$host") == Label("reserved", "host")
    assert Label.parse("app=web") == Label("unspec", "app", "web")
    assert Label.parse("k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=x").key == (
        "io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name")


def test_label_rejects_unknown_source_and_empty_key() -> None:
    with pytest.raises(ValueError, match="unknown source"):
        Label("bogus", "a")
    with pytest.raises(ValueError, match="key must not be empty"):
        Label("k8s", "")


def test_selector_label_matching() -> None:
    assert Label("any", "app", "web").matches(Label("k8s", "app", "web"))
    assert not Label("k8s", "app", "web").matches(Label("container", "app", "web"))
    assert not Label("k8s", "app", "web").matches(Label("k8s", "app", "db"))
    assert cidr_label("10.0.0.0/8").matches(cidr_label("10.1.2.3/32"))
    assert not cidr_label("10.1.0.0/16").matches(cidr_label("10.0.0.0/8"))


def test_cidr_label_normalizes_and_writes_ipv6_colons_as_dashes() -> None:
    assert str(cidr_label("10.1.2.3/8")) == "cidr:10.0.0.0/8"
    assert str(cidr_label("2001:db8::/32")) == "cidr:2001-db8--/32"


def test_labelset_is_sorted_hashable_and_order_independent() -> None:
    a = LabelSet(["k8s:b=2", "k8s:a=1", "reserved:host"])
    b = LabelSet([Label("reserved", "host"), Label("k8s", "a", "1"), Label("k8s", "b", "2"), "k8s:a=1"])
    assert a == b and hash(a) == hash(b) and len(a) == 3
    assert a.strings() == ["k8s:a=1", "k8s:b=2", "reserved:host"]
    assert a.canonical() == "k8s:a=1;k8s:b=2;reserved:host=;"
    assert a.sha256() == b.sha256() and len(a.sha256()) == 64
    assert "k8s:a=1" in a and Label("k8s", "a", "2") not in a
    assert a.get("b") == "2" and a.get("missing") is None
    assert LabelSet.from_dict(a.to_dict()) == a
    assert a.to_dict()["reserved:host"] == ""


def test_endpoint_labels_are_those_of_section_1_2() -> None:
    labels = endpoint_labels({"app": "web"}, "prod", {"team": "a"}, "sa1", pod_name="web-1")
    assert labels.strings() == [
        "k8s:app=web",
        "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=prod",
        "k8s:io.cilium.k8s.namespace.labels.team=a",
        "k8s:io.cilium.k8s.policy.cluster=default",
        "k8s:io.cilium.k8s.policy.serviceaccount=sa1",
        "k8s:io.kubernetes.pod.name=web-1",
        "k8s:io.kubernetes.pod.namespace=prod",
    ]


def test_pod_identity_labels_drop_informational_labels() -> None:
    pod = {
        "app": "web",
        "app.kubernetes.io/name": "shop",
        "pod-template-hash": "7c9d5b8f4d",
        "controller-revision-hash": "abc",
        "pod-template-generation": "1",
        "statefulset.kubernetes.io/pod-name": "db-0",
        "apps.kubernetes.io/pod-index": "0",
        "batch.kubernetes.io/job-completion-index": "3",
        "batch.kubernetes.io/controller-uid": "u",
        "controller-uid": "u",
        "topology.kubernetes.io/zone": "z1",
        "kubernetes.io/hostname": "n1",
        "failure-domain.beta.kubernetes.io/zone": "z",
        "k8s.io/thing": "x",
        "annotation.foo": "y",
        "etcd_node": "e",
        "io.kubernetes.container.name": "c",
    }
    labels = pod_identity_labels(pod, "prod", {"ns": "prod"}, "default", cluster="c1")
    assert labels.strings() == [
        "k8s:app.kubernetes.io/name=shop",
        "k8s:app=web",
        "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=prod",
        "k8s:io.cilium.k8s.namespace.labels.ns=prod",
        "k8s:io.cilium.k8s.policy.cluster=c1",
        "k8s:io.cilium.k8s.policy.serviceaccount=default",
        "k8s:io.kubernetes.pod.namespace=prod",
    ]


def test_replicas_of_one_deployment_share_identity_labels() -> None:
    a = pod_identity_labels({"app": "web", "pod-template-hash": "aaa"}, "ns", {}, "default")
    b = pod_identity_labels({"app": "web", "pod-template-hash": "bbb"}, "ns", {}, "default")
    c = pod_identity_labels({"app": "web"}, "other", {}, "default")
    assert a == b and a != c


def test_filter_keeps_reserved_and_drops_pod_name() -> None:
    flt = LabelFilter.default()
    assert flt.relevant(Label("reserved", "host"))
    assert not flt.relevant(Label("k8s", "io.kubernetes.pod.name", "p"))
    assert flt.relevant(Label("k8s", "io.kubernetes.pod.namespace", "ns"))
    keep, drop = flt.split([Label("k8s", "app", "x"), Label("k8s", "pod-template-hash", "h")])
    assert keep.strings() == ["k8s:app=x"] and drop.strings() == ["k8s:pod-template-hash=h"]


def test_user_include_rule_switches_to_allow_list_mode() -> None:
    flt = LabelFilter.from_config(["k8s:app"])
    assert flt.user_includes
    assert flt.relevant(Label("k8s", "app", "web"))
    assert not flt.relevant(Label("k8s", "tier", "front"))  # not included any more
    assert flt.relevant(Label("k8s", "io.kubernetes.pod.namespace", "ns"))  # default includes still apply
    assert flt.relevant(Label("reserved", "world"))


def test_user_exclude_rule_only_removes() -> None:
    flt = LabelFilter.from_config(["!tier"])
    assert not flt.user_includes
    assert not flt.relevant(Label("k8s", "tier", "front"))
    assert flt.relevant(Label("k8s", "app", "web"))


def test_filter_rule_parse() -> None:
    assert FilterRule.parse("k8s:!foo") == FilterRule("foo", True, "k8s")
    assert FilterRule.parse("any:bar") == FilterRule("bar", False, "")
    assert FilterRule.parse("reserved:.*") == FilterRule(".*", False, "reserved")
    with pytest.raises(ValueError, match="empty pattern"):
        FilterRule.parse("!")
    with pytest.raises(ValueError, match="invalid regex"):
        FilterRule.parse("a(")
    assert not FilterRule.parse("k8s:app").matches(Label("container", "app", "x"))
