"""``membrane policy validate | get | simulate``: network policies from files and from the cluster store.

``validate`` checks files without touching the store; ``get`` prints the stored policies as rules the
way ``cilium-dbg policy get`` does (JSON rules labelled with their origin, then ``Revision: N``);
``simulate`` (membrane.cli.policy_simulate) compares the current policies with the ones in a file over
the running pods. The functions that build text are pure and tested without a lab.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from membrane.cli.arguments import CLIError
from membrane.cli.policy_store import stored_policies
from membrane.identity.labels import NAMESPACE_LABELS_PREFIX, SOURCES
from membrane.identity.labels import POD_NAMESPACE_LABEL as POD_NAMESPACE


def add_parser(sub: Any, lab_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``policy`` command (called from membrane.cli.main)."""
    p = sub.add_parser("policy", help="network policies: validate, get, simulate")
    p.set_defaults(handler=run)  # main dispatches to the handler its sub-parser set
    lab_arg(p)
    psub = p.add_subparsers(dest="policy_cmd", required=True)
    q = psub.add_parser("validate", help="check policy files without storing them")
    lab_arg(q)
    q.add_argument("-f", "--filename", action="append", required=True, help="file, directory or - for stdin")
    q = psub.add_parser("get", help="the stored policies as rules (cilium-dbg policy get)")
    lab_arg(q)
    q.add_argument("-n", "--namespace", default=None, help="only this namespace (and clusterwide policies)")
    q.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace (the default)")
    q.add_argument("-o", "--output", choices=("json",))
    q = psub.add_parser("simulate", help="which pod pairs would change reachability with these policies")
    lab_arg(q)
    q.add_argument("-f", "--filename", action="append", required=True, help="file, directory or - for stdin")
    q.add_argument("--from", dest="source", default=None, metavar="NS/POD", help="only this source pod")
    q.add_argument("--to", dest="destination", default=None, metavar="NS/POD", help="only this destination pod")
    q.add_argument("--port", action="append", default=None, metavar="PORT/PROTO",
                   help="probe (80/tcp, 53/udp, icmp); default: the ports the policies name, else 80/TCP")


def run(args: argparse.Namespace) -> int:
    if args.policy_cmd == "validate":
        return cmd_validate(args)
    if args.policy_cmd == "get":
        return cmd_get(args)
    from membrane.cli.policy_simulate import cmd_simulate

    return cmd_simulate(args)


# ---- notes shared by validate, get and apply ------------------------------------------------------------
def object_notes(obj: Mapping[str, Any], host_firewall: bool = False) -> list[str]:
    """What one validated policy carries that is accepted but not enforced, field by field
    (``host_firewall``: the lab's hostFirewall.enabled, which enforces host policies)."""
    from membrane.policy.unenforced import unenforced_fields

    return [str(u) for u in unenforced_fields(obj, host_firewall=host_firewall)]


def apply_warnings(objs: Iterable[Mapping[str, Any]], host_firewall: bool = False) -> list[str]:
    """``Warning:`` lines for ``apply`` (stderr, as kubectl prints the API server's warnings)."""
    from membrane.policy.translate import origin_of

    return [f"Warning: {origin_of(obj)}: {note}" for obj in objs for note in object_notes(obj, host_firewall)]


def lab_host_firewall(store: Any) -> bool:
    """hostFirewall.enabled of the lab behind ``store`` (its stored values, as the agents read them)."""
    from membrane.model.config import ClusterConfig

    try:
        kv = store.client.get(f"/membrane/{store.layout.cluster}/config")
    except Exception:  # the store unreachable: say what is not enforced without the host firewall
        return False
    return kv is not None and ClusterConfig.from_dict(json.loads(kv.value)).host_firewall_enabled


def _lab_host_firewall_if_any(lab: str | None) -> bool:
    """validate works without a cluster; when its store answers, its hostFirewall setting counts."""
    from membrane.cli.target import cluster_store

    if not lab:
        return False
    try:
        store = cluster_store(lab)
    except Exception:  # no such lab or cluster: validate is offline
        return False
    return lab_host_firewall(store)


def object_ref(obj: Mapping[str, Any]) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name', '')}"


# ---- validate ----------------------------------------------------------------------------------------
def validate_documents(documents: Iterable[tuple[str, Any]], host_firewall: bool = False) -> tuple[list[str], list[str]]:
    """(lines for stdout, errors) for ``policy validate``: every document is checked, none is stored."""
    from membrane.model.errors import ValidationError
    from membrane.model.validate import validate_object
    from membrane.policy.translate import POLICY_KINDS, rules_from_object

    out: list[str] = []
    errors: list[str] = []
    for where, raw in documents:
        try:
            obj = validate_object(raw, where)
        except ValidationError as exc:
            errors.append(str(exc))
            continue
        if obj["kind"] not in POLICY_KINDS:
            out.append(f"valid: {object_ref(obj)} (not a policy)")
            continue
        try:
            rules = rules_from_object(obj)
        except (ValueError, KeyError, TypeError) as exc:
            errors.append(f"{where}: {object_ref(obj)}: cannot translate into rules: {exc}")
            continue
        out.append(f"valid: {object_ref(obj)} ({len(rules)} rule{'' if len(rules) == 1 else 's'})")
        out.extend(f"  note: {note}" for note in object_notes(obj, host_firewall))
    return out, errors


def cmd_validate(args: argparse.Namespace) -> int:
    import sys

    from membrane.cli.manifests import load_paths
    from membrane.model.errors import ValidationError

    try:
        documents = [(where, raw) for where, raw in load_paths(args.filename)]
    except ValidationError as exc:
        raise CLIError(str(exc)) from None
    if not documents:
        raise CLIError("no objects found in " + ", ".join(args.filename))
    out, errors = validate_documents(documents, _lab_host_firewall_if_any(getattr(args, "lab", None)))
    for line in out:
        print(line)
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    return 1 if errors else 0


# ---- get ---------------------------------------------------------------------------------------------
def _source_key(key: str) -> str:
    source, colon, _rest = key.partition(":")
    return key if colon and source in SOURCES else f"any:{key}"


def _bare(key: str) -> str:
    source, colon, rest = key.partition(":")
    return rest if colon and source in SOURCES else key


def cilium_selector(sel: Mapping[str, Any] | None, namespace: str, *, peer: bool = False,
                    default_source: str = "any") -> dict[str, Any]:
    """A selector as the agent holds it: keys with their source, scoped to ``namespace`` (if any).

    A subject always gets the namespace; a peer only if it names neither the namespace nor namespace
    labels nor a reserved label (cilium-semantics §2.10).
    """
    sel = sel or {}

    def keyed(key: str) -> str:
        return _source_key(key) if ":" in key or default_source == "any" else f"{default_source}:{key}"

    labels = {keyed(k): v for k, v in (sel.get("matchLabels") or {}).items()}
    exprs = [dict(e, key=keyed(str(e.get("key", "")))) for e in sel.get("matchExpressions") or []]
    keys = [*labels, *(e["key"] for e in exprs)]
    mentions_ns = any(_bare(k) == POD_NAMESPACE or _bare(k).startswith(NAMESPACE_LABELS_PREFIX)
                      or k.startswith("reserved:") for k in keys)
    if namespace and not (peer and mentions_ns):
        labels = {k: v for k, v in labels.items() if _bare(k) != POD_NAMESPACE}
        exprs = [e for e in exprs if _bare(e["key"]) != POD_NAMESPACE]
        labels[f"k8s:{POD_NAMESPACE}"] = namespace
    out: dict[str, Any] = {}
    if labels:
        out["matchLabels"] = dict(sorted(labels.items()))
    if exprs:
        out["matchExpressions"] = exprs
    return out


def origin_labels(obj: Mapping[str, Any]) -> list[dict[str, str]]:
    """The labels Cilium puts on a rule to name the object it came from."""
    meta = obj.get("metadata") or {}
    out = [{"key": "io.cilium.k8s.policy.derived-from", "value": str(obj.get("kind")), "source": "k8s"},
           {"key": "io.cilium.k8s.policy.name", "value": str(meta.get("name", "")), "source": "k8s"}]
    if meta.get("namespace") and obj.get("kind") != "CiliumClusterwideNetworkPolicy":
        out.append({"key": "io.cilium.k8s.policy.namespace", "value": str(meta["namespace"]), "source": "k8s"})
    if meta.get("uid"):
        out.append({"key": "io.cilium.k8s.policy.uid", "value": str(meta["uid"]), "source": "k8s"})
    return out


def _cilium_spec_rule(spec: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    rule = dict(spec)
    if spec.get("endpointSelector") is not None:
        rule["endpointSelector"] = cilium_selector(spec["endpointSelector"], namespace)
    for direction, field in (("ingress", "fromEndpoints"), ("ingressDeny", "fromEndpoints"),
                             ("egress", "toEndpoints"), ("egressDeny", "toEndpoints")):
        items = spec.get(direction)
        if not items:
            continue
        rule[direction] = [
            dict(item, **{field: [cilium_selector(s, namespace, peer=True) for s in item[field]]})
            if item.get(field) else item
            for item in items
        ]
    return rule


def policy_rules_json(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One stored policy as cilium-dbg shows its rules: one per spec, labelled with the origin."""
    meta = obj.get("metadata") or {}
    labels = origin_labels(obj)
    if obj.get("kind") == "NetworkPolicy":
        spec = dict(obj.get("spec") or {})
        ns = str(meta.get("namespace") or "default")
        rule = {"endpointSelector": cilium_selector(spec.pop("podSelector", {}), ns, default_source="k8s"), **spec}
        return [dict(rule, labels=labels)]
    namespace = "" if obj.get("kind") == "CiliumClusterwideNetworkPolicy" else str(meta.get("namespace") or "default")
    specs = ([obj["spec"]] if obj.get("spec") is not None else []) + list(obj.get("specs") or [])
    return [dict(_cilium_spec_rule(spec, namespace), labels=labels) for spec in specs]


def policy_notes(objs: Iterable[Mapping[str, Any]], host_firewall: bool = False) -> list[str]:
    """``<kind>/<ns>/<name>: <note>`` for every stored policy with something accepted but not enforced."""
    from membrane.policy.translate import origin_of, rules_from_object

    out = []
    for obj in objs:
        try:
            rules_from_object(obj)
            notes = object_notes(obj, host_firewall)
        except (ValueError, KeyError, TypeError) as exc:
            notes = [f"cannot translate into rules: {exc}"]
        out.extend(f"{origin_of(obj)}: {note}" for note in notes)
    return out


def render_policy_get(objs: list[Mapping[str, Any]], revision: int, host_firewall: bool = False) -> str:
    """The rules as indented JSON, a ``Note:`` line per unenforced feature, then ``Revision: N``."""
    rules = [rule for obj in objs for rule in policy_rules_json(obj)]
    lines = [json.dumps(rules, indent=2)]
    lines.extend(f"Note: {note}" for note in policy_notes(objs, host_firewall))
    lines.append(f"Revision: {revision}")
    return "\n".join(lines)


def cmd_get(args: argparse.Namespace) -> int:
    from membrane.cli.target import cluster_store

    namespace = None if args.all_namespaces else args.namespace
    store = cluster_store(args.lab)
    objs, revision = stored_policies(store, namespace)
    host_firewall = lab_host_firewall(store)
    if args.output == "json":
        rules = [rule for obj in objs for rule in policy_rules_json(obj)]
        print(json.dumps({"policy": rules, "notes": policy_notes(objs, host_firewall), "revision": revision},
                         indent=2))
        return 0
    print(render_policy_get(objs, revision, host_firewall))
    return 0
