"""Per-stage timings of pod starts in a churn run: the lab kubelet's and the agents'.

The kubelet writes one line per pod start to ``/run/membrane/<lab>/cni-timings.jsonl``: ``queue`` (waiting
for a pod-start worker), ``sandbox`` (netns + pause), ``seconds`` (the CNI ADD exec as the runtime sees it)
and ``containers`` (starting them). Each agent keeps its stages of endpoint creation (``membrane status -o
json`` → ``endpoint-regeneration``: waitingForLock, ipam, veth, endpointMap, bpfAttach, route, persist,
total, identityAllocation, ipcachePublish, policyCalculation, waitingForIdentity) with p50/p99 per node.
Across nodes the table shows the median of the nodes' p50s and the largest p99 (an upper bound of the
pooled p99).
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from membrane.api.unixhttp import request_json
from membrane.endpoint.start_stats import percentile
from membrane.lab.paths import LabPaths

KUBELET_STAGES = ("queue", "sandbox", "seconds", "containers")
KUBELET_NAMES = {"queue": "kubelet: wait for a worker", "sandbox": "kubelet: sandbox (netns, pause)",
                 "seconds": "CNI ADD exec (runtime view)", "containers": "kubelet: start containers"}


def kubelet_stages(lines: list[dict[str, Any]]) -> dict[str, tuple[float, float, int]]:
    """stage -> (p50, p99, count) in seconds over the ADD lines given."""
    out = {}
    for stage in KUBELET_STAGES:
        values = [float(line[stage]) for line in lines if stage in line]
        if values:
            out[KUBELET_NAMES[stage]] = (percentile(values, 50), percentile(values, 99), len(values))
    return out


def agent_stages(lab: str, nodes: list[str]) -> dict[str, tuple[float, float, int]]:
    """scope -> (median of the nodes' p50, max of their p99, total count) from each agent's status."""
    paths = LabPaths(lab)
    per_scope: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        status = request_json(paths.agent_socket(node), "GET", "/v1/status", timeout=30)
        for scope, entry in (status.get("endpoint-regeneration") or {}).items():
            per_scope.setdefault(scope, []).append(entry)
    return {f"agent: {scope}": (statistics.median(e["p50"] for e in entries), max(e["p99"] for e in entries),
                                sum(e["count"] for e in entries))
            for scope, entries in per_scope.items()}


def read_timings(path: str) -> list[dict[str, Any]]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if '"ADD"' in line]


def render(stages: dict[str, tuple[float, float, int]]) -> str:
    rows = ["| stage | p50 (ms) | p99 (ms) | samples |", "|---|---|---|---|"]
    rows += [f"| {name} | {p50 * 1e3:.1f} | {p99 * 1e3:.1f} | {n} |" for name, (p50, p99, n) in stages.items()]
    return "\n".join(rows)
