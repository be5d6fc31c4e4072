"""Pod placement for the lab kubelet: ``spec.nodeName`` if given, else spread by pod count.

Honours ``spec.nodeSelector`` against node labels and the per-node pod limit (``maxPods``, default
110). Messages follow the Kubernetes scheduler's (``0/3 nodes are available: 3 Too many pods.``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Placement:
    node: str | None
    message: str = ""


def schedule(pod: dict[str, Any], nodes: list[dict[str, Any]], pods_per_node: dict[str, int], max_pods: int) -> Placement:
    spec = pod.get("spec", {})
    wanted = spec.get("nodeName")
    names = [n["metadata"]["name"] for n in nodes]
    if wanted:
        if wanted not in names:
            return Placement(None, f"node {wanted!r} not found")
        return Placement(wanted)
    selector = spec.get("nodeSelector") or {}
    reasons: dict[str, int] = {}
    candidates = []
    for node in nodes:
        name = node["metadata"]["name"]
        labels = node.get("metadata", {}).get("labels", {}) or {}
        if any(labels.get(k) != v for k, v in selector.items()):
            reasons["node(s) didn't match Pod's node affinity/selector"] = reasons.get(
                "node(s) didn't match Pod's node affinity/selector", 0) + 1
            continue
        if pods_per_node.get(name, 0) >= max_pods:
            reasons["Too many pods"] = reasons.get("Too many pods", 0) + 1
            continue
        if not _ready(node):
            reasons["node(s) were not ready"] = reasons.get("node(s) were not ready", 0) + 1
            continue
        candidates.append(name)
    if not candidates:
        detail = ", ".join(f"{count} {why}" for why, count in sorted(reasons.items()))
        return Placement(None, f"0/{len(nodes)} nodes are available: {detail}.")
    best = min(candidates, key=lambda n: (pods_per_node.get(n, 0), names.index(n)))
    return Placement(best)


def _ready(node: dict[str, Any]) -> bool:
    for cond in node.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False
