"""Deployments: validation, the pod-template hash, and the pure "which pods to create/delete" step.

Membrane has no ReplicaSets: a Deployment owns its pods directly. Pods are named like Kubernetes names
them (``<deployment>-<pod-template-hash>-<5 random chars>``) and carry the ``pod-template-hash``
label, so a template change is visible as pods of an old hash, which are replaced.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

from membrane.model.fields import Fields, forbidden, invalid
from membrane.model.labels import LabelSelector, check_selector
from membrane.model.metadata import check_template_meta
from membrane.model.pod import pod_is_ready, pod_is_terminating, pod_node_name
from membrane.model.podspec import check_pod_spec
from membrane.model.rollout import is_recreate, record_revision, rolling_step, surge_and_unavailable

DEPLOYMENT_SPEC_FIELDS = (
    "replicas", "selector", "template", "strategy", "minReadySeconds", "revisionHistoryLimit", "paused",
    "progressDeadlineSeconds",
)
TEMPLATE_FIELDS = ("metadata", "spec")
STRATEGY_TYPES = ("RollingUpdate", "Recreate")
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
# Kubernetes' alphabet for generated names: no vowels (no words), no 0/1/3 (no look-alikes).
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
SUFFIX_LENGTH = 5
# A generated name's base is cut so that base + suffix still fits a DNS label.
MAX_GENERATED_BASE = 63 - SUFFIX_LENGTH

# Pods created per Deployment per sync, as Kubernetes' ReplicaSet controller's burstReplicas: a
# Deployment of 2 000 000 000 replicas (a valid int32) grows by batches instead of building them all.
BURST_REPLICAS = 500

_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193


def check_deployment(obj: dict[str, Any]) -> None:
    """Validate a Deployment's spec in place (metadata is checked by the caller); default replicas 1."""
    f = Fields({} if obj.get("spec") is None else obj["spec"], "spec", DEPLOYMENT_SPEC_FIELDS)
    obj["spec"] = f.data
    f.integer("replicas", lo=0, default=1)
    selector = check_selector(f.mapping("selector", required=True), f.at("selector"))
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        raise invalid(f.at("selector"), selector, "empty selector is invalid for deployment")
    t = Fields(f.mapping("template", required=True), f.at("template"), TEMPLATE_FIELDS)
    meta = check_template_meta(t.raw("metadata"), t.at("metadata"))
    t.set("metadata", meta)
    t.set("spec", check_pod_spec({} if t.raw("spec") is None else t.raw("spec"), t.at("spec"), template=True))
    if not LabelSelector.from_dict(selector, f.at("selector")).matches(meta["labels"]):
        raise invalid(f"{t.at('metadata')}.labels", meta["labels"], "`selector` does not match template `labels`")
    _check_strategy(f)
    f.integer("minReadySeconds", lo=0)
    f.integer("revisionHistoryLimit", lo=0)
    f.boolean("paused")
    deadline = f.integer("progressDeadlineSeconds", lo=1)
    if deadline is not None and deadline <= (f.raw("minReadySeconds") or 0):
        raise invalid(f.at("progressDeadlineSeconds"), deadline, "must be greater than minReadySeconds")


def _check_strategy(f: Fields) -> None:
    if not f.has("strategy"):
        return
    s = Fields(f.raw("strategy"), f.at("strategy"), ("type", "rollingUpdate"))
    kind = s.choice("type", STRATEGY_TYPES, default="RollingUpdate")
    if not s.has("rollingUpdate"):
        return
    if kind == "Recreate":
        raise forbidden(s.at("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'")
    r = Fields(s.raw("rollingUpdate"), s.at("rollingUpdate"), ("maxUnavailable", "maxSurge"))
    for key in ("maxUnavailable", "maxSurge"):
        value = r.raw(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise invalid(r.at(key), value, "must be an integer or a percentage (e.g. 25%)")
        if isinstance(value, int) and value < 0:
            raise invalid(r.at(key), value, "must be greater than or equal to 0")
        if isinstance(value, str) and not (value.endswith("%") and value[:-1].isdigit()):
            raise invalid(r.at(key), value, "a valid percent string must be a numeric string followed by '%'")


def safe_encode(text: str) -> str:
    """Map each character onto the safe alphabet (Kubernetes' ``rand.SafeEncodeString``)."""
    return "".join(SAFE_ALPHABET[ord(c) % len(SAFE_ALPHABET)] for c in text)


def fnv1a_32(data: bytes) -> int:
    """The 32-bit FNV-1a hash (what Go's ``hash/fnv.New32a`` computes)."""
    h = _FNV32_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV32_PRIME) & 0xFFFFFFFF
    return h


def pod_template_hash(template: dict[str, Any]) -> str:
    """A stable short hash of a pod template: FNV-32a of its canonical JSON, safe-encoded.

    Like Kubernetes, the 32-bit hash is written in decimal and each digit mapped through the safe
    alphabet, giving names such as ``7c5ddbdf54``.
    """
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return safe_encode(str(fnv1a_32(canonical.encode("utf-8"))))


def random_pod_suffix(rng: random.Random) -> str:
    """Five characters of the safe alphabet, as Kubernetes' ``generateName`` appends."""
    return "".join(rng.choice(SAFE_ALPHABET) for _ in range(SUFFIX_LENGTH))


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _has_hash(pod: dict[str, Any], template_hash: str) -> bool:
    return (_meta(pod).get("labels") or {}).get(POD_TEMPLATE_HASH_LABEL) == template_hash


def owned_by(pod: dict[str, Any], deploy: dict[str, Any]) -> bool:
    """True when ``pod`` is controlled by ``deploy`` (same namespace, Deployment owner reference)."""
    dmeta, pmeta = _meta(deploy), _meta(pod)
    if pmeta.get("namespace", "default") != dmeta.get("namespace", "default"):
        return False
    for ref in pmeta.get("ownerReferences") or []:
        if ref.get("kind") == "Deployment" and ref.get("name") == dmeta.get("name"):
            if ref.get("uid") and dmeta.get("uid") and ref["uid"] != dmeta["uid"]:
                continue
            return True
    return False


def _scale_down_order(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pods in the order Kubernetes would remove them: unscheduled, not running, not ready, newest first."""
    ordered = sorted(pods, key=lambda p: str(_meta(p).get("name", "")))
    ordered.sort(key=lambda p: str(_meta(p).get("creationTimestamp") or ""), reverse=True)
    ordered.sort(
        key=lambda p: (
            bool(pod_node_name(p)),
            (p.get("status") or {}).get("phase") == "Running",
            pod_is_ready(p),
        )
    )
    return ordered


def _new_pod(deploy: dict[str, Any], template_hash: str, name: str, base: str) -> dict[str, Any]:
    dmeta = _meta(deploy)
    template = deploy["spec"]["template"]
    tmeta = template.get("metadata") or {}
    owner: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": dmeta["name"]}
    if dmeta.get("uid"):
        owner["uid"] = dmeta["uid"]
    owner.update(controller=True, blockOwnerDeletion=True)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "generateName": base,
            "namespace": dmeta.get("namespace", "default"),
            "labels": {**(tmeta.get("labels") or {}), POD_TEMPLATE_HASH_LABEL: template_hash},
            "annotations": dict(tmeta.get("annotations") or {}),
            "ownerReferences": [owner],
        },
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def pods_for_deployment(
    deploy: dict[str, Any], existing: list[dict[str, Any]], rng: random.Random, *, burst: int = BURST_REPLICAS
) -> tuple[list[dict[str, Any]], list[str]]:
    """What to do to bring a (validated) Deployment's pods in line with its spec.

    ``existing`` may hold any pods; only those the Deployment owns are considered (pods already being
    deleted count as gone). Returns the pod objects to create and the names of pods to delete: pods
    of an older template hash are replaced step by step (see membrane.model.rollout: at most maxSurge
    extra pods, at most maxUnavailable fewer ready ones; Recreate removes them all first), surplus pods
    are removed, missing ones created (at most ``burst`` per call; the next sync creates more).
    """
    spec = deploy["spec"]
    replicas = int(spec.get("replicas", 1))
    template_hash = pod_template_hash(spec["template"])
    namespace = _meta(deploy).get("namespace", "default")
    live = [p for p in existing if owned_by(p, deploy) and not pod_is_terminating(p)]
    current = [p for p in live if _has_hash(p, template_hash)]
    old = [p for p in live if not _has_hash(p, template_hash)]
    to_delete: list[str] = []
    wanted = max(0, replicas - len(current))
    if old:  # a rollout: old pods go and new ones come within maxSurge / maxUnavailable
        surge, unavailable = surge_and_unavailable(deploy, replicas)
        old_ready = [p for p in _scale_down_order(old) if pod_is_ready(p)]
        old_unready = [p for p in _scale_down_order(old) if not pod_is_ready(p)]
        create, drop_unready, drop_ready = rolling_step(
            replicas, surge, unavailable, len(current), sum(1 for p in current if pod_is_ready(p)),
            len(old_ready), len(old_unready))
        if is_recreate(deploy):  # Recreate: every old pod goes first, new ones only once none is left
            create, drop_unready, drop_ready = 0, len(old_unready), len(old_ready)
        to_delete = [str(_meta(p)["name"]) for p in old_unready[:drop_unready] + old_ready[:drop_ready]]
        wanted = create
    elif len(current) > replicas:
        to_delete = [str(_meta(p)["name"]) for p in _scale_down_order(current)[:len(current) - replicas]]
    taken = {_meta(p).get("name") for p in existing if _meta(p).get("namespace", "default") == namespace}
    base = f"{_meta(deploy)['name']}-{template_hash}-"[:MAX_GENERATED_BASE]
    to_create = []
    for _ in range(min(burst, wanted)):
        for _attempt in range(1000):
            name = base + random_pod_suffix(rng)
            if name not in taken:
                break
        else:  # pragma: no cover - 27**5 names; only a broken rng gets here
            raise RuntimeError(f"could not find a free pod name for {base!r}")
        taken.add(name)
        to_create.append(_new_pod(deploy, template_hash, name, base))
    return to_create, to_delete


def deployment_status(deploy: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``status`` block of a Deployment given the pods that exist (``READY 2/3`` in listings)."""
    template_hash = pod_template_hash(deploy["spec"]["template"])
    live = [p for p in pods if owned_by(p, deploy) and not pod_is_terminating(p)]
    updated = [p for p in live if _has_hash(p, template_hash)]
    ready = [p for p in live if pod_is_ready(p)]
    status: dict[str, Any] = {
        "replicas": len(live),
        "updatedReplicas": len(updated),
        "readyReplicas": len(ready),
        "availableReplicas": len(ready),
    }
    if _meta(deploy).get("generation") is not None:
        status["observedGeneration"] = _meta(deploy)["generation"]
    desired = deploy["spec"].get("replicas")
    desired = 1 if desired is None else int(desired)
    available = len(ready) >= desired - surge_and_unavailable(deploy, desired)[1]
    status["revisions"] = record_revision((deploy.get("status") or {}).get("revisions"), template_hash,
                                          deploy["spec"]["template"])
    status["conditions"] = [{
        "type": "Available", "status": "True" if available else "False",
        "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
        "message": "Deployment has minimum availability." if available
        else "Deployment does not have minimum availability.",
    }]
    return status

