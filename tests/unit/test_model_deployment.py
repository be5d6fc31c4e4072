"""Deployments: validation, pod-template-hash, pod naming, scaling and template changes."""

from __future__ import annotations

import copy
import random

import pytest

from membrane.model.deployment import (
    SAFE_ALPHABET,
    deployment_status,
    fnv1a_32,
    owned_by,
    pod_template_hash,
    pods_for_deployment,
    random_pod_suffix,
    safe_encode,
)
from membrane.model.errors import ValidationError
from membrane.model.validate import validate_object


def deployment(**spec) -> dict:
    base = {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web", "tier": "fe"}},
            "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]},
        },
    }
    base.update(spec)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
            "spec": base}


def valid(obj) -> dict:
    return validate_object(obj, "d.yaml:doc 1")


def error(obj) -> str:
    before = copy.deepcopy(obj)
    with pytest.raises(ValidationError) as exc:
        validate_object(obj, "d.yaml:doc 1")
    assert obj == before
    return str(exc.value).removeprefix("d.yaml:doc 1: ")


# ---- validation ----

def test_defaults():
    obj = deployment()
    out = valid(obj)
    assert obj == deployment(), "defaults go into the copy, not the input"
    assert out["spec"]["replicas"] == 1
    tmpl = out["spec"]["template"]
    assert tmpl["spec"]["restartPolicy"] == "Always"
    assert tmpl["spec"]["containers"][0]["ports"][0]["protocol"] == "TCP"
    assert tmpl["metadata"]["annotations"] == {}
    assert valid(deployment(replicas=0))["spec"]["replicas"] == 0


def test_replicas():
    assert error(deployment(replicas=-1)) == "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    assert error(deployment(replicas="3")) == 'spec.replicas: Invalid value: "3": must be an integer, not string'
    assert error(deployment(replicas=1.5)) == "spec.replicas: Invalid value: 1.5: must be an integer, not number"


def test_selector_rules():
    obj = deployment()
    del obj["spec"]["selector"]
    assert error(obj) == "spec.selector: Required value"
    assert error(deployment(selector={})) == "spec.selector: Invalid value: {}: empty selector is invalid for deployment"
    assert error(deployment(selector={"matchLabels": {"app": "db"}})) == (
        'spec.template.metadata.labels: Invalid value: {"app": "web", "tier": "fe"}: '
        "`selector` does not match template `labels`"
    )
    exprs = {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}]}
    assert valid(deployment(selector=exprs))
    exprs["matchExpressions"][0]["operator"] = "NotIn"
    assert error(deployment(selector=exprs)).startswith("spec.template.metadata.labels: Invalid value:")
    assert error(deployment(selector={"matchLabels": {"app": "web"}, "matchLabel": {}})) == (
        'spec.selector: unknown field "spec.selector.matchLabel"'
    )


def test_template_rules():
    obj = deployment()
    del obj["spec"]["template"]
    assert error(obj) == "spec.template: Required value"
    obj = deployment()
    del obj["spec"]["template"]["metadata"]
    assert error(obj) == (
        "spec.template.metadata.labels: Invalid value: {}: `selector` does not match template `labels`"
    )
    obj = deployment()
    obj["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert error(obj) == 'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"'
    obj = deployment()
    del obj["spec"]["template"]["spec"]["containers"][0]["image"]
    assert error(obj) == "spec.template.spec.containers[0].image: Required value"
    obj = deployment()
    obj["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    assert error(obj) == (
        'spec.template.spec.containers[0]: unknown field "spec.template.spec.containers[0].imagee"'
    )
    obj = deployment()
    obj["spec"]["template"]["metadata"]["labels"]["bad key"] = "x"
    assert error(obj).startswith('spec.template.metadata.labels: Invalid value: "bad key"')
    obj = deployment()
    obj["spec"]["template"]["specs"] = {}
    assert error(obj) == 'spec.template: unknown field "spec.template.specs"'


def test_other_spec_fields():
    out = valid(deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
                           minReadySeconds=5, revisionHistoryLimit=3, paused=False, progressDeadlineSeconds=600))
    assert out["spec"]["minReadySeconds"] == 5
    assert valid(deployment(strategy={"type": "Recreate"}))
    assert error(deployment(strategy={"type": "Recreate", "rollingUpdate": {}})) == (
        "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"
    )
    assert error(deployment(strategy={"type": "BlueGreen"})).startswith('spec.strategy.type: Unsupported value: "BlueGreen"')
    assert error(deployment(strategy={"rollingUpdate": {"maxSurge": "lots"}})) == (
        'spec.strategy.rollingUpdate.maxSurge: Invalid value: "lots": a valid percent string must be a numeric '
        "string followed by '%'"
    )
    assert error(deployment(progressDeadlineSeconds=5, minReadySeconds=10)) == (
        "spec.progressDeadlineSeconds: Invalid value: 5: must be greater than minReadySeconds"
    )
    assert error(deployment(replica=2)) == 'spec: unknown field "spec.replica"'


# ---- hashing and naming ----

def test_safe_encode_maps_digits_like_kubernetes():
    # '0'..'9' are code points 48..57; modulo 27 they index "4", "5", ..., "f" in the safe alphabet.
    assert safe_encode("0123456789") == "456789bcdf"


def test_pod_template_hash_is_stable_and_canonical():
    t1 = {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    t2 = {"spec": {"containers": [{"image": "i", "name": "c"}]}, "metadata": {"labels": {"b": "2", "a": "1"}}}
    h = pod_template_hash(t1)
    assert h == pod_template_hash(t2)
    assert 1 <= len(h) <= 10 and set(h) <= set("456789bcdf")
    t3 = copy.deepcopy(t1)
    t3["spec"]["containers"][0]["image"] = "j"
    assert pod_template_hash(t3) != h


def test_fnv1a_32_reference_vectors():
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"a") == 0xE40C292C
    assert fnv1a_32(b"foobar") == 0xBF9CF968


def test_pod_template_hash_known_value():
    assert pod_template_hash({}) == safe_encode(str(fnv1a_32(b"{}")))
    # Pinned: pods in the store carry this label, so the rendering must not drift between versions.
    assert pod_template_hash({"spec": {"containers": [{"name": "c", "image": "i"}]}}) == safe_encode(
        str(fnv1a_32(b'{"spec":{"containers":[{"image":"i","name":"c"}]}}'))
    )
    assert pod_template_hash({}) == "5859f96865"


def test_random_pod_suffix():
    rng = random.Random(1)
    suffixes = {random_pod_suffix(rng) for _ in range(50)}
    assert all(len(s) == 5 and set(s) <= set(SAFE_ALPHABET) for s in suffixes)
    assert len(suffixes) > 45
    assert random_pod_suffix(random.Random(7)) == random_pod_suffix(random.Random(7))


# ---- reconciling pods ----

def names(pods) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


def test_scale_up_from_nothing():
    d = valid(deployment(replicas=3))
    h = pod_template_hash(d["spec"]["template"])
    create, delete = pods_for_deployment(d, [], random.Random(0))
    assert delete == []
    assert len(create) == 3 and len(set(names(create))) == 3
    for p in create:
        meta = p["metadata"]
        assert meta["name"].startswith(f"web-{h}-") and len(meta["name"]) == len(f"web-{h}-") + 5
        assert meta["generateName"] == f"web-{h}-"
        assert meta["namespace"] == "shop"
        assert meta["labels"] == {"app": "web", "tier": "fe", "pod-template-hash": h}
        assert meta["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                            "controller": True, "blockOwnerDeletion": True}]
        assert p["spec"] == d["spec"]["template"]["spec"]
        assert p["spec"] is not d["spec"]["template"]["spec"]
        assert owned_by(p, d)
        # the pods it creates are valid pods
        assert validate_object(p, "x")["metadata"]["name"] == meta["name"]


def test_owner_uid_is_recorded_when_known():
    d = valid(deployment())
    d["metadata"]["uid"] = "abc"
    create, _ = pods_for_deployment(d, [], random.Random(0))
    assert create[0]["metadata"]["ownerReferences"][0]["uid"] == "abc"


def test_steady_state_does_nothing():
    d = valid(deployment(replicas=2))
    create, _ = pods_for_deployment(d, [], random.Random(0))
    assert pods_for_deployment(d, create, random.Random(0)) == ([], [])


def test_scale_up_adds_only_the_missing_pods_with_fresh_names():
    d = valid(deployment(replicas=1))
    first, _ = pods_for_deployment(d, [], random.Random(0))
    d["spec"]["replicas"] = 3
    create, delete = pods_for_deployment(d, first, random.Random(0))  # same seed: must avoid the taken name
    assert delete == [] and len(create) == 2
    assert not set(names(create)) & set(names(first))


def test_scale_down_prefers_unscheduled_then_not_ready_then_newest():
    d = valid(deployment(replicas=4))
    pods, _ = pods_for_deployment(d, [], random.Random(0))
    a, b, c, e = pods
    a["spec"]["nodeName"] = "n1"
    a["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    a["metadata"]["creationTimestamp"] = "2024-01-01T00:00:03Z"
    b["spec"]["nodeName"] = "n1"
    b["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    b["metadata"]["creationTimestamp"] = "2024-01-01T00:00:01Z"
    c["spec"]["nodeName"] = "n2"
    c["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}
    # e stays unscheduled
    d["spec"]["replicas"] = 3
    assert pods_for_deployment(d, pods, random.Random(0)) == ([], [names([e])[0]])
    d["spec"]["replicas"] = 1
    assert pods_for_deployment(d, pods, random.Random(0)) == ([], names([e, c, a]))
    d["spec"]["replicas"] = 0
    assert pods_for_deployment(d, pods, random.Random(0))[1] == names([e, c, a, b])


def _ready(pods: list) -> list:
    for p in pods:
        p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        p["spec"]["nodeName"] = "k8s-w1"
    return pods


def test_template_change_rolls_within_surge_and_unavailable():
    d = valid(deployment(replicas=2))  # defaults: maxSurge 25% -> 1, maxUnavailable 25% -> 0
    old = _ready(pods_for_deployment(d, [], random.Random(0))[0])
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    new_hash = pod_template_hash(d["spec"]["template"])
    create, delete = pods_for_deployment(d, old, random.Random(0))
    assert delete == [] and len(create) == 1  # one surge pod, nothing taken away yet
    assert create[0]["metadata"]["labels"]["pod-template-hash"] == new_hash
    assert create[0]["spec"]["containers"][0]["image"] == "nginx:2"
    assert pods_for_deployment(d, old + create, random.Random(0)) == ([], [])  # until the new pod is ready
    _ready(create)
    create2, delete2 = pods_for_deployment(d, old + create, random.Random(0))
    assert create2 == [] and len(delete2) == 1 and delete2[0] in names(old)
    left = [p for p in old if p["metadata"]["name"] not in delete2] + create
    create3, delete3 = pods_for_deployment(d, left, random.Random(0))
    assert len(create3) == 1 and delete3 == []
    _ready(create3)
    assert pods_for_deployment(d, left + create3, random.Random(0))[1] == [p["metadata"]["name"] for p in left[:1]]


def test_recreate_removes_old_pods_first():
    d = valid(deployment(replicas=2, strategy={"type": "Recreate"}))
    old = _ready(pods_for_deployment(d, [], random.Random(0))[0])
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    create, delete = pods_for_deployment(d, old, random.Random(0))
    assert create == [] and sorted(delete) == sorted(names(old))
    assert len(pods_for_deployment(d, [], random.Random(0))[0]) == 2


def test_terminating_and_foreign_pods_are_ignored():
    d = valid(deployment(replicas=1))
    mine, _ = pods_for_deployment(d, [], random.Random(0))
    mine[0]["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    other = valid(deployment())
    other["metadata"]["name"] = "api"
    theirs, _ = pods_for_deployment(other, [], random.Random(0))
    elsewhere = copy.deepcopy(mine[0])
    elsewhere["metadata"]["namespace"] = "other"
    del elsewhere["metadata"]["deletionTimestamp"]
    create, delete = pods_for_deployment(d, mine + theirs + [elsewhere], random.Random(0))
    assert delete == [] and len(create) == 1
    assert create[0]["metadata"]["name"] != mine[0]["metadata"]["name"]


def test_pods_of_a_recreated_deployment_with_another_uid_are_not_owned():
    d = valid(deployment())
    d["metadata"]["uid"] = "old"
    pods, _ = pods_for_deployment(d, [], random.Random(0))
    d["metadata"]["uid"] = "new"
    assert not owned_by(pods[0], d)


def test_long_deployment_names_are_cut_to_fit_a_dns_label():
    d = valid(deployment())
    d["metadata"]["name"] = "x" * 60
    create, _ = pods_for_deployment(d, [], random.Random(0))
    name = create[0]["metadata"]["name"]
    assert len(name) == 63 and name.startswith("x" * 58)


def test_deployment_status():
    d = valid(deployment(replicas=3))
    d["metadata"]["generation"] = 4
    pods, _ = pods_for_deployment(d, [], random.Random(0))
    pods[0]["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    status = deployment_status(d, pods[:2])
    conditions = status.pop("conditions")
    assert [r["revision"] for r in status.pop("revisions")] == [1]
    assert status == {"replicas": 2, "updatedReplicas": 2, "readyReplicas": 1, "availableReplicas": 1,
                      "observedGeneration": 4}
    assert [(c["type"], c["status"]) for c in conditions] == [("Available", "False")]  # 1 < 3 - 0 (25% of 3)
    for p in pods[1:3]:
        p["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    assert deployment_status(d, pods)["conditions"][0]["status"] == "True"
    d["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}
    assert deployment_status(d, pods[:1])["conditions"][0]["status"] == "True"  # 1 >= 3 - 2


def test_huge_replica_counts_grow_by_bursts():
    """replicas may be any int32: the controller must not build two billion pods in one sync (issue 18)."""
    import time

    from membrane.model.deployment import BURST_REPLICAS

    d = valid(deployment(replicas=2**31 - 1))
    start = time.monotonic()
    create, delete = pods_for_deployment(d, [], random.Random(1))
    assert len(create) == BURST_REPLICAS and delete == [] and time.monotonic() - start < 5
    more, _ = pods_for_deployment(d, create, random.Random(2), burst=10)
    assert len(more) == 10 and not {p["metadata"]["name"] for p in more} & {p["metadata"]["name"] for p in create}
