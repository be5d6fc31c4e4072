"""``membrane get rs|replicasets`` and the ReplicaSets of ``get all``.

The lab's Deployment controller creates pods directly (named ``<deployment>-<pod-template-hash>-…``),
with no stored ReplicaSet, so ReplicaSets are synthesised as kubectl would show them: one per
Deployment and template hash that still has pods, plus the Deployment's current template (desired =
``spec.replicas``; older templates desired 0), counting the pods carrying that hash.
"""

from __future__ import annotations

from typing import Any

from membrane.model.deployment import pod_template_hash
from membrane.model.kinds import KindInfo

REPLICASET = KindInfo("ReplicaSet", ("apps/v1",), "apps", "replicasets", ("rs",), read_only=True)
NAMES = ("rs", "replicaset", "replicasets", "replicasets.apps", "replicaset.apps")
HASH_LABEL = "pod-template-hash"


def _ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def replicasets(deployments: list[dict[str, Any]], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ReplicaSet objects of these Deployments, from the pods (both lists from the store)."""
    out = []
    for dep in deployments:
        meta, spec = dep["metadata"], dep.get("spec") or {}
        template = spec.get("template") or {}
        current = pod_template_hash(template)
        by_hash: dict[str, list[dict[str, Any]]] = {current: []}
        for pod in pods:
            labels = (pod.get("metadata") or {}).get("labels") or {}
            h = labels.get(HASH_LABEL)
            if (pod["metadata"].get("namespace") == meta["namespace"] and h
                    and pod["metadata"]["name"].startswith(f"{meta['name']}-{h}-")):
                by_hash.setdefault(h, []).append(pod)
        for h, owned in sorted(by_hash.items()):
            desired = (1 if spec.get("replicas") is None else int(spec["replicas"])) if h == current else 0
            ready = sum(1 for p in owned if _ready(p))
            labels = {**((template.get("metadata") or {}).get("labels") or {}), HASH_LABEL: h}
            selector = {**((spec.get("selector") or {}).get("matchLabels") or {}), HASH_LABEL: h}
            out.append({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": f"{meta['name']}-{h}", "namespace": meta["namespace"], "labels": labels,
                             "creationTimestamp": meta.get("creationTimestamp"),
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                  "name": meta["name"], "controller": True}]},
                "spec": {"replicas": desired, "selector": {"matchLabels": selector},
                         "template": {**template, "metadata": {**(template.get("metadata") or {}),
                                                              "labels": labels}}},
                "status": {"replicas": len(owned), "readyReplicas": ready, "availableReplicas": ready},
            })
    return out
