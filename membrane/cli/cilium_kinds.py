"""``membrane get ciliumendpoints|cep`` and ``membrane get ciliumidentities|ciliumid``.

Cilium keeps these as CRDs; here they are not stored kinds, so they are synthesised: CiliumEndpoints
from every node agent's ``/v1/endpoints``, CiliumIdentities from the identity allocator in the store.
Tables follow the CRDs' printer columns (``kubectl get cep``: NAME SECURITY IDENTITY ENDPOINT STATE
IPV4 IPV6; ``-o wide`` adds the enforcement columns; ``kubectl get ciliumid``: NAME NAMESPACE AGE).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from membrane.cli.arguments import CLIError
from membrane.cli.tabwriter import kubectl_table

ENDPOINT_NAMES = ("ciliumendpoints", "ciliumendpoint", "cep", "ciliumep", "ciliumendpoints.cilium.io")
IDENTITY_NAMES = ("ciliumidentities", "ciliumidentity", "ciliumid", "ciliumidentities.cilium.io")
ENFORCING = {"none": (False, False), "ingress": (True, False), "egress": (False, True), "both": (True, True)}
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"


def handles(kinds: str) -> bool:
    """Whether ``membrane get KINDS`` names a synthesised kind (it then has to name only such kinds)."""
    names = [k.lower() for k in kinds.split(",") if k]
    ours = [k for k in names if k in ENDPOINT_NAMES or k in IDENTITY_NAMES]
    if ours and len(ours) != len(names):
        raise CLIError(f"{', '.join(ours)} cannot be listed together with other kinds")
    return bool(ours)


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _state(enforcing: bool) -> str:
    return "enforcing" if enforcing else "non-enforcing"


def cilium_endpoint(ep: Mapping[str, Any], node: str) -> dict[str, Any]:
    """A CiliumEndpoint object from one agent endpoint (models.Endpoint shape plus flat fields)."""
    status = ep.get("status") or {}
    mode = _get(status, "policy", "realized", "policy-enabled")
    ingress, egress = ENFORCING.get(str(mode), (False, False))
    policy = ({"ingress": {"enforcing": ingress, "state": _state(ingress)},
               "egress": {"enforcing": egress, "state": _state(egress)}} if mode is not None else {})
    ipv4 = ep.get("ipv4")
    if not ipv4:
        addressing = _get(status, "networking", "addressing") or [{}]
        first = addressing[0] if isinstance(addressing[0], dict) else {}
        ipv4 = first.get("ipv4") or ""
    identity = status.get("identity") or {}
    labels = ep.get("labels") if isinstance(ep.get("labels"), dict) else {}
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumEndpoint",
        "metadata": {"name": str(ep.get("pod_name", "")), "namespace": str(ep.get("namespace") or "default"),
                     "labels": dict(labels)},
        "status": {
            "id": ep.get("id"),
            "identity": {"id": identity.get("id"), "labels": list(_get(status, "labels", "security-relevant") or [])},
            "networking": {"addressing": [{"ipv4": ipv4 or ""}], "node": node},
            "policy": policy,
            "state": status.get("state") or "",
        },
    }


def _cep_row(cep: Mapping[str, Any], wide: bool, all_namespaces: bool) -> list[str]:
    status = cep["status"]
    ident = status["identity"].get("id")
    row = [cep["metadata"]["namespace"]] if all_namespaces else []
    row += [cep["metadata"]["name"], "" if ident is None else str(ident)]
    if wide:
        row += [str(_get(status, "policy", "ingress", "state") or "<status disabled>"),
                str(_get(status, "policy", "egress", "state") or "<status disabled>"), ""]
    row += [str(status.get("state") or ""), status["networking"]["addressing"][0]["ipv4"], ""]
    return row


def render_endpoints(ceps: list[Mapping[str, Any]], wide: bool = False, all_namespaces: bool = False) -> str:
    header = ["NAMESPACE"] if all_namespaces else []
    header += ["NAME", "SECURITY IDENTITY"]
    if wide:
        header += ["INGRESS ENFORCEMENT", "EGRESS ENFORCEMENT", "VISIBILITY POLICY"]
    header += ["ENDPOINT STATE", "IPV4", "IPV6"]
    return kubectl_table([header, *(_cep_row(c, wide, all_namespaces) for c in ceps)]).rstrip("\n")


def cilium_identity(identity: int, labels: Iterable[Any]) -> dict[str, Any]:
    """A CiliumIdentity object (``security-labels`` as Cilium stores them; no creation time is known)."""
    from membrane.identity.labels import LabelSet

    labelset = labels if isinstance(labels, LabelSet) else LabelSet(labels)
    meta_labels = {lbl.key: lbl.value for lbl in labelset if lbl.source == "k8s"}
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumIdentity",
            "metadata": {"name": str(identity), "labels": meta_labels},
            "security-labels": labelset.to_dict()}


def render_identities(objs: list[Mapping[str, Any]]) -> str:
    rows = [["NAME", "NAMESPACE", "AGE"]]
    rows.extend([o["metadata"]["name"], str(o["metadata"]["labels"].get(POD_NAMESPACE_LABEL, "")), "<unknown>"]
                for o in objs)
    return kubectl_table(rows).rstrip("\n")


def _endpoints(lab: str) -> list[dict[str, Any]]:
    from membrane.cli.node_cmds import ask_agent
    from membrane.cli.target import pick_nodes

    out = []
    for node in pick_nodes(lab, None):
        try:
            eps = ask_agent(lab, node, "/v1/endpoints")
        except CLIError as exc:
            print(f"warning: {exc}", file=sys.stderr)
            continue
        out.extend(cilium_endpoint(ep, node) for ep in eps)
    return sorted(out, key=lambda c: (c["metadata"]["namespace"], c["metadata"]["name"]))


def _identities(lab: str) -> list[dict[str, Any]]:
    from membrane.cli.target import cluster_store
    from membrane.identity.allocator import IdentityAllocator
    from membrane.store.txn import StoreTxnOps

    store = cluster_store(lab)
    allocated = IdentityAllocator(store.client, StoreTxnOps(), store.layout.identities_prefix).list()
    return [cilium_identity(n, allocated[n]) for n in sorted(allocated)]


def run_get(args: argparse.Namespace) -> int:
    """``membrane get`` for the synthesised kinds (names, -n/-A, -l and -o as for stored kinds)."""
    from membrane.cli.printers import render_objects
    from membrane.model.labels import LabelSelector

    selector = LabelSelector.parse(args.selector) if args.selector else None
    blocks: list[str] = []
    collected: list[dict[str, Any]] = []
    for kind in dict.fromkeys(k.lower() for k in args.kind.split(",") if k):
        namespaced = kind in ENDPOINT_NAMES
        objs = _endpoints(args.lab) if namespaced else _identities(args.lab)
        ns = None if (args.all_namespaces or not namespaced) else (args.namespace or "default")
        objs = [o for o in objs if ns is None or o["metadata"]["namespace"] == ns]
        if args.names:
            objs = [o for o in objs if o["metadata"]["name"] in args.names]
        if selector is not None:
            objs = [o for o in objs if selector.matches(o["metadata"].get("labels") or {})]
        collected.extend(objs)
        if args.output in ("yaml", "json"):
            continue
        if not objs and not args.names:
            print(f"No resources found{f' in {ns} namespace' if ns else ''}.", file=sys.stderr)
        elif namespaced:
            blocks.append(render_endpoints(objs, args.output == "wide", bool(args.all_namespaces)))
        else:
            blocks.append(render_identities(objs))
    if args.output in ("yaml", "json"):
        single = len(args.names) == 1 and len(collected) == 1
        print(render_objects(collected, args.output, single=single))
    elif blocks:
        print("\n\n".join(blocks))
    found = {o["metadata"]["name"] for o in collected}
    missing = [n for n in args.names if n not in found]
    plural = "ciliumendpoints" if any(k in ENDPOINT_NAMES for k in args.kind.lower().split(",")) else "ciliumidentities"
    for name in missing:
        print(f'Error from server (NotFound): {plural}.cilium.io "{name}" not found', file=sys.stderr)
    return 1 if missing else 0
