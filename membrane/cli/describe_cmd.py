"""``membrane describe KIND [NAME...]``: kubectl's describe layout for pods, services, nodes, deployments,
and (like any custom resource) CiliumNetworkPolicies and other kinds: their fields as titled sections.

Lines are ``Key:\\tvalue`` aligned by Go-style tabwriter (2 spaces padding), as kubectl writes them.
Membrane keeps no Event objects yet, so every object ends with ``Events:  <none>``.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime
from typing import Any

from membrane.cli.arguments import CLIError, check_namespace, parse_selector, split_resource_names
from membrane.cli.tabwriter import tabwrite
from membrane.model.event import about


def add_parser(sub: Any, lab_arg: Any) -> None:
    p = sub.add_parser("describe", help="show details of resources (kubectl describe)")
    p.set_defaults(handler=run)  # main dispatches to the handler its sub-parser set
    lab_arg(p)
    p.add_argument("kind", help="pods, services, nodes, deployments, cnp, … or KIND/NAME")
    p.add_argument("names", nargs="*")
    p.add_argument("-n", "--namespace", default=None)
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-l", "--selector", default=None)


def run(args: argparse.Namespace) -> int:
    from membrane.cli import get_support
    from membrane.cli.arguments import resolve_kind
    from membrane.cli.target import cluster_store

    check_namespace(args.namespace)
    kind, names = split_resource_names(args.kind, args.names)
    selector = parse_selector(args.selector)
    infos = get_support.kinds(kind or "", resolve_kind)
    if len(infos) != 1:
        raise CLIError("describe takes one resource type")
    info = infos[0]
    store = cluster_store(args.lab)
    ns = None if (args.all_namespaces or not info.namespaced) else (args.namespace or "default")
    rc = 0
    if names:
        objs = []
        for name in names:
            obj = get_support.get_one(store, info, ns or "", name)
            if obj is None:
                print(f'Error from server (NotFound): {info.plural} "{name}" not found')
                rc = 1
            else:
                objs.append(obj)
    else:
        objs = get_support.list_objects(store, info, ns)
        if selector is not None:
            objs = [o for o in objs if selector.matches((o.get("metadata") or {}).get("labels") or {})]
        if not objs:
            raise CLIError(f"No resources found in {ns} namespace." if ns else "No resources found")
    context = _Context(store)
    texts = [describe(obj, context) for obj in objs]
    print("\n\n\n".join(texts))
    return rc


class _Context:
    """What a description needs besides the object: pods of a node, endpoints of a service."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._events: list[dict[str, Any]] | None = None

    def events(self) -> list[dict[str, Any]]:
        if self._events is None:
            self._events = self.store.list("core", "Event")[0]
        return self._events

    def pods_on(self, node: str) -> list[dict[str, Any]]:
        return [p for p in self.store.list("core", "Pod")[0] if (p.get("spec") or {}).get("nodeName") == node]

    def endpoints(self, ns: str, name: str) -> dict[str, Any] | None:
        return self.store.get("core", "Endpoints", ns, name)


def _map(d: dict[str, Any] | None) -> list[str]:
    return [f"{k}={v}" for k, v in sorted((d or {}).items())] or ["<none>"]


def _lines(key: str, values: list[str], indent: str = "") -> list[str]:
    out = [f"{indent}{key}:\t{values[0]}"]
    out += [f"{indent}\t{v}" for v in values[1:]]
    return out


def _time(ts: str | None) -> str:
    if not ts:
        return "<unset>"
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).strftime("%a, %d %b %Y %H:%M:%S %z")
    except ValueError:
        return ts


def _age(ts: str | None) -> str:
    from membrane.cli.age import format_age

    if not ts:
        return "<unknown>"
    try:
        created = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return format_age((datetime.now(UTC) - created).total_seconds())


def _head(obj: dict[str, Any], namespaced: bool = True) -> list[str]:
    meta = obj.get("metadata") or {}
    out = [f"Name:\t{meta.get('name', '')}"]
    if namespaced:
        out.append(f"Namespace:\t{meta.get('namespace', '')}")
    out += _lines("Labels", _map(meta.get("labels")))
    out += _lines("Annotations", _map(meta.get("annotations")))
    return out


def describe(obj: dict[str, Any], ctx: _Context) -> str:
    kind = obj.get("kind")
    fn = {"Pod": _pod, "Service": _service, "Node": _node, "Deployment": _deployment}.get(str(kind), _generic)
    return tabwrite("\n".join(fn(obj, ctx)), 0, 2) + "\n" + events_section(about(ctx.events(), obj))


def events_section(events: list[dict[str, Any]]) -> str:
    """kubectl's Events table: Type Reason Age From Message (``(xN over AGE)`` for repeated events)."""
    if not events:
        return "Events:  <none>"
    rows = [["Type", "Reason", "Age", "From", "Message"], ["----", "------", "----", "----", "-------"]]
    for ev in events:
        age = _age(ev.get("lastTimestamp"))
        if int(ev.get("count") or 1) > 1:
            age = f"{age} (x{ev['count']} over {_age(ev.get('firstTimestamp'))})"
        rows.append([str(ev.get("type", "")), str(ev.get("reason", "")), age,
                     str((ev.get("source") or {}).get("component", "")), str(ev.get("message", ""))])
    return "Events:\n" + "\n".join("  " + line for line in tabwrite("\n".join("\t".join(r) for r in rows), 0, 2)
                                    .split("\n"))


def _pod(pod: dict[str, Any], ctx: _Context) -> list[str]:
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    node = spec.get("nodeName")
    where = f"{node}/{status.get('hostIP', '')}" if node else "<none>"
    out = [f"Name:\t{meta.get('name')}", f"Namespace:\t{meta.get('namespace')}", "Priority:\t0",
           f"Service Account:\t{spec.get('serviceAccountName') or 'default'}",
           f"Node:\t{where}",
           f"Start Time:\t{_time(status.get('startTime') or meta.get('creationTimestamp'))}"]
    out += _lines("Labels", _map(meta.get("labels")))
    out += _lines("Annotations", _map(meta.get("annotations")))
    if meta.get("deletionTimestamp"):
        out.append(f"Status:\tTerminating (lasts {spec.get('terminationGracePeriodSeconds', 30)}s)")
    else:
        out.append(f"Status:\t{status.get('phase', 'Pending')}")
    out.append(f"IP:\t{status.get('podIP', '')}")
    out.append("IPs:" + ("" if status.get("podIP") else "\t<none>"))
    if status.get("podIP"):
        out.append(f"  IP:\t{status['podIP']}")
    out.append("Containers:")
    states = {c.get("name"): c for c in status.get("containerStatuses") or []}
    for c in spec.get("containers") or []:
        cs = states.get(c.get("name"), {})
        ports = [f"{p.get('containerPort')}/{p.get('protocol', 'TCP')}" for p in c.get("ports") or []]
        host_ports = [f"{p.get('hostPort')}/{p.get('protocol', 'TCP')}" for p in c.get("ports") or [] if p.get("hostPort")]
        out += [f"  {c.get('name')}:", f"    Image:\t{c.get('image')}", f"    Port:\t{', '.join(ports) or '<none>'}",
                f"    Host Port:\t{', '.join(host_ports) or '<none>'}"]
        for field in ("command", "args"):
            if c.get(field):
                out.append(f"    {field.capitalize()}:")
                out += [f"      {a}" for a in c[field]]
        state = cs.get("state") or {}
        name = next(iter(state), "waiting")
        out.append(f"    State:\t{name.capitalize()}")
        reason = (state.get(name) or {}).get("reason")
        if reason:
            out.append(f"      Reason:\t{reason}")
        started = (state.get(name) or {}).get("startedAt")
        if started:
            out.append(f"      Started:\t{_time(started)}")
        out += [f"    Ready:\t{'True' if cs.get('ready') else 'False'}",
                f"    Restart Count:\t{cs.get('restartCount', 0)}"]
        env = c.get("env") or []
        out.append("    Environment:" + ("" if env else "\t<none>"))
        out += [f"      {e.get('name')}:\t{e.get('value', '')}" for e in env]
    out.append("Conditions:")
    out.append("  Type\tStatus")
    out += [f"  {c.get('type')}\t{c.get('status')}" for c in status.get("conditions") or []]
    out.append(f"QoS Class:\tBestEffort\nNode-Selectors:\t{', '.join(_map(spec.get('nodeSelector')))}")
    return out


def _ports_of(svc: dict[str, Any], ep: dict[str, Any] | None) -> list[str]:
    addrs = [f"{a.get('ip')}" for s in (ep or {}).get("subsets") or [] for a in s.get("addresses") or []]
    out = []
    for p in (svc.get("spec") or {}).get("ports") or []:
        name = p.get("name") or "<unset>"
        proto = p.get("protocol", "TCP")
        target = p.get("targetPort", p.get("port"))
        out += [f"Port:\t{name}  {p.get('port')}/{proto}", f"TargetPort:\t{target}/{proto}"]
        if p.get("nodePort"):
            out.append(f"NodePort:\t{name}  {p['nodePort']}/{proto}")
        eps = [f"{a}:{target}" for a in addrs] if isinstance(target, int) else addrs
        out.append(f"Endpoints:\t{','.join(eps) or '<none>'}")
    return out


def _service(svc: dict[str, Any], ctx: _Context) -> list[str]:
    meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
    out = _head(svc)
    out += [f"Selector:\t{','.join(_map(spec.get('selector')))}", f"Type:\t{spec.get('type', 'ClusterIP')}",
            "IP Family Policy:\tSingleStack", "IP Families:\tIPv4", f"IP:\t{spec.get('clusterIP', '')}",
            f"IPs:\t{','.join(spec.get('clusterIPs') or [spec.get('clusterIP', '')])}"]
    if spec.get("externalIPs"):
        out.append(f"External IPs:\t{','.join(spec['externalIPs'])}")
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    if ingress:
        out.append(f"LoadBalancer Ingress:\t{', '.join(i.get('ip', '') for i in ingress)}")
    out += _ports_of(svc, ctx.endpoints(meta.get("namespace", ""), meta.get("name", "")))
    out.append(f"Session Affinity:\t{spec.get('sessionAffinity', 'None')}")
    if spec.get("type") in ("NodePort", "LoadBalancer"):
        out.append(f"External Traffic Policy:\t{spec.get('externalTrafficPolicy', 'Cluster')}")
    out.append(f"Internal Traffic Policy:\t{spec.get('internalTrafficPolicy', 'Cluster')}")
    return out


def _node(node: dict[str, Any], ctx: _Context) -> list[str]:
    meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    labels = meta.get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")) or ["<none>"]
    out = [f"Name:\t{meta.get('name')}", f"Roles:\t{','.join(roles)}"]
    out += _lines("Labels", _map(labels)) + _lines("Annotations", _map(meta.get("annotations")))
    out += [f"CreationTimestamp:\t{_time(meta.get('creationTimestamp'))}", "Conditions:",
            "  Type\tStatus\tLastHeartbeatTime\tReason\tMessage", "  ----\t------\t-----------------\t------\t-------"]
    out += [f"  {c.get('type')}\t{c.get('status')}\t{_time(c.get('lastHeartbeatTime'))}\t{c.get('reason', '')}\t"
            f"{c.get('message', '')}" for c in status.get("conditions") or []]
    out.append("Addresses:")
    out += [f"  {a.get('type')}:\t{a.get('address')}" for a in status.get("addresses") or []]
    out.append(f"PodCIDR:\t{spec.get('podCIDR', '<none>')}")
    out.append(f"PodCIDRs:\t{','.join(spec.get('podCIDRs') or [spec.get('podCIDR', '<none>')])}")
    pods = ctx.pods_on(meta.get("name", ""))
    out += [f"Non-terminated Pods:\t({len(pods)} in total)", "  Namespace\tName\tAge",
            "  ---------\t----\t---"]
    out += [f"  {p['metadata'].get('namespace')}\t{p['metadata']['name']}\t"
            f"{_age(p['metadata'].get('creationTimestamp'))}" for p in pods]
    return out


def _deployment(dep: dict[str, Any], ctx: _Context) -> list[str]:
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    meta = dep.get("metadata") or {}
    strategy = spec.get("strategy") or {}
    out = _head(dep) + [f"CreationTimestamp:\t{_time(meta.get('creationTimestamp'))}",
                        f"Selector:\t{','.join(_map((spec.get('selector') or {}).get('matchLabels')))}",
                        f"Replicas:\t{spec.get('replicas', 1)} desired | {status.get('updatedReplicas', 0)} updated | "
                        f"{status.get('replicas', 0)} total | {status.get('availableReplicas', 0)} available | "
                        f"{status.get('unavailableReplicas', 0)} unavailable",
                        f"StrategyType:\t{strategy.get('type', 'RollingUpdate')}"]
    return out + _generic_section("Pod Template", spec.get("template") or {}, "")


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def _title(key: str) -> str:
    """kubectl's label for a field of an unstructured object: ``endpointSelector`` -> ``Endpoint Selector``."""
    words = _CAMEL.sub(" ", key).split(" ")
    return " ".join(w[:1].upper() + w[1:] for w in words)


def _label(key: str) -> str:
    """Field names are titled; keys that are data (label keys with dots, slashes, colons) stay as they are."""
    return key if any(ch in key for ch in "./:") else _title(key)


def _generic_section(key: str, value: Any, indent: str) -> list[str]:
    if isinstance(value, dict):
        out = [f"{indent}{key}:"]
        for k, v in value.items():
            out += _generic_section(_label(k), v, indent + "  ")
        return out
    if isinstance(value, list):
        out = [f"{indent}{key}:"]
        for item in value:
            if isinstance(item, dict):
                for k, v in item.items():
                    out += _generic_section(_label(k), v, indent + "  ")
                if not item:
                    out.append(f"{indent}  <empty>")
            elif isinstance(item, list):
                out += _generic_section("-", item, indent + "  ")
            else:
                out.append(f"{indent}  {item}")
        return out
    return [f"{indent}{key}:\t{value}"]


def _generic(obj: dict[str, Any], ctx: _Context) -> list[str]:
    """Any other kind, as kubectl describes a custom resource: header, then every field but metadata."""
    meta = obj.get("metadata") or {}
    out = _head(obj, namespaced=bool(meta.get("namespace")))
    out += [f"API Version:\t{obj.get('apiVersion', '')}", f"Kind:\t{obj.get('kind', '')}", "Metadata:",
            f"  Creation Timestamp:\t{meta.get('creationTimestamp', '')}",
            f"  Resource Version:\t{meta.get('resourceVersion', '')}", f"  UID:\t{meta.get('uid', '')}"]
    for key, value in obj.items():
        if key not in ("apiVersion", "kind", "metadata"):
            out += _generic_section(_title(key), value, "")
    return out
