"""``membrane policy simulate -f NEW.yaml``: what applying policies would change, from the control plane only.

Reads the running pods, namespaces, identities and policies from the store, resolves every pod's
policy under the current rules and under the candidate (current with the file's policies added or
replaced) and prints the pod pairs whose verdict changes. Nothing is written anywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from membrane.cli.arguments import CLIError
from membrane.cli.tabwriter import kubectl_table
from membrane.identity.labels import LabelSet, pod_identity_labels
from membrane.identity.reserved import ENTITIES, entity_identities, reserved_identities
from membrane.model.config import ClusterConfig
from membrane.policy.namedports import pod_named_ports
from membrane.policy.simulate import Change, PodInfo, Probe

# Pods whose labels have no identity yet get a stand-in number outside the cluster range (256..65535).
UNALLOCATED_BASE = 1 << 20
SKIPPED_PHASES = ("Succeeded", "Failed")


def pod_infos(pods: Iterable[Mapping[str, Any]], namespace_labels: Mapping[str, Mapping[str, str]],
              identities: Mapping[int, LabelSet], cluster: str = "default") -> list[PodInfo]:
    """The running pods (a pod IP, not host-network, not finished) as the simulator sees them.

    A pod's identity is the allocated one for its identity labels; labels nobody allocated yet get a
    stand-in number (pods with equal labels share it).
    """
    by_labels = {labels: n for n, labels in identities.items()}
    stand_ins: dict[LabelSet, int] = {}
    out = []
    for pod in pods:
        meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
        if not status.get("podIP") or spec.get("hostNetwork") or status.get("phase") in SKIPPED_PHASES:
            continue
        ns = str(meta.get("namespace") or "default")
        labels = pod_identity_labels(meta.get("labels") or {}, ns, namespace_labels.get(ns) or {},
                                     spec.get("serviceAccountName") or spec.get("serviceAccount") or "default",
                                     cluster)
        identity = by_labels.get(labels)
        if identity is None:
            identity = stand_ins.setdefault(labels, UNALLOCATED_BASE + len(stand_ins))
        out.append(PodInfo(ns, str(meta.get("name", "")), identity, labels.to_dict(), str(status["podIP"]),
                           pod_named_ports(pod)))
    return sorted(out, key=lambda p: p.key)


def entity_map(identities: Mapping[int, LabelSet], cluster: str = "default") -> dict[str, frozenset[int]]:
    """Entity name -> the identities it selects (reserved ones and ``identities``)."""
    return {name: entity_identities(name, identities, cluster) for name in ENTITIES if name not in ("all", "none")}


def pod_key(text: str | None) -> str | None:
    """``ns/pod`` or ``pod`` (namespace default) -> ``ns/pod``."""
    if text is None:
        return None
    return text if "/" in text else f"default/{text}"


def render_changes(changes: Iterable[Change]) -> str:
    rows = [["SOURCE", "DESTINATION", "PORT", "BEFORE", "AFTER"]]
    rows.extend([c.src, c.dst, str(c.probe), str(c.before), str(c.after)] for c in changes)
    if len(rows) == 1:
        return "no reachability changes"
    return kubectl_table(rows).rstrip("\n")


def _load_candidate(filenames: list[str]) -> list[dict[str, Any]]:
    from membrane.cli.manifests import load_paths
    from membrane.model.errors import ValidationError
    from membrane.model.validate import validate_object
    from membrane.policy.translate import POLICY_KINDS

    try:
        objs = [validate_object(raw, where) for where, raw in load_paths(filenames)]
    except ValidationError as exc:
        raise CLIError(str(exc)) from None
    policies = [o for o in objs if o["kind"] in POLICY_KINDS]
    for obj in objs:
        if obj["kind"] not in (*POLICY_KINDS, "CiliumCIDRGroup", "Service"):
            print(f"warning: ignoring {obj['kind']}/{obj['metadata']['name']}: not a policy", file=sys.stderr)
    if not policies:
        raise CLIError("no policies found in " + ", ".join(filenames))
    return policies + [o for o in objs if o["kind"] in ("CiliumCIDRGroup", "Service")]  # the candidate's context


def cmd_simulate(args: argparse.Namespace) -> int:
    from membrane.cli.policy_store import stored_policies
    from membrane.cli.target import cluster_store, target
    from membrane.identity.allocator import IdentityAllocator
    from membrane.policy.context import PolicyContext
    from membrane.policy.simulate import simulate
    from membrane.policy.translate import replace_policies, rules_from_object
    from membrane.store.txn import StoreTxnOps

    candidate_objs = _load_candidate(args.filename)
    try:
        probes = [Probe.parse(p) for p in args.port] if args.port else None
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    store = cluster_store(args.lab)
    cluster = target(args.lab).cluster
    raw = store.client.get(f"/membrane/{cluster}/config")  # the cluster's settings, as the agents read them
    mode = ClusterConfig.from_dict(json.loads(raw.value)).policy_enforcement_mode if raw else "default"
    allocated = IdentityAllocator(store.client, StoreTxnOps(), store.layout.identities_prefix).list()
    namespaces = {n["metadata"]["name"]: (n["metadata"].get("labels") or {}) for n in store.list("core", "Namespace")[0]}
    pods = pod_infos(store.list("core", "Pod")[0], namespaces, allocated, cluster)
    current_objs, _revision = stored_policies(store, None)
    context = PolicyContext.from_objects([*store.list("cilium.io", "CiliumCIDRGroup")[0],
                                          *store.list("core", "Service")[0]])
    current = [r for obj in current_objs for r in rules_from_object(obj, context)]
    new_context = context.updated(candidate_objs)  # the candidate's groups and Services replace stored ones
    candidate = replace_policies([r for obj in current_objs for r in rules_from_object(obj, new_context)],
                                 candidate_objs, new_context)
    keys = {p.key for p in pods}
    source, destination = pod_key(args.source), pod_key(args.destination)
    for wanted in (source, destination):
        if wanted is not None and wanted not in keys:
            raise CLIError(f"pod {wanted} not found or not running")
    known: dict[int, LabelSet] = {**reserved_identities(), **allocated}
    changes = simulate(
        pods, current, candidate, probes=probes,
        sources=[source] if source else None, destinations=[destination] if destination else None,
        identities={n: labels.to_dict() for n, labels in known.items()},
        entities=entity_map(allocated, cluster), mode=mode,
    )
    print(render_changes(changes))
    return 0
