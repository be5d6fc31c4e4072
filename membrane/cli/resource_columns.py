"""kubectl's table columns per resource kind (k8s.io/kubernetes/pkg/printers/internalversion, and the
CRD printer columns Cilium declares), computed from plain JSON objects.

Each kind has its header, the extra ``-o wide`` headers, and a row function
``(obj, now, wide) -> list[str]`` that follows kubectl's rules for that kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from membrane.cli.age import age_since, parse_timestamp
from membrane.cli.selector_text import format_label_selector, format_labels, selector_string

NONE = "<none>"
RowFn = Callable[[dict[str, Any], datetime, bool], list[str]]


@dataclass(frozen=True)
class KindColumns:
    namespaced: bool
    headers: tuple[str, ...]
    wide_headers: tuple[str, ...]
    row: RowFn


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _name(obj: dict[str, Any]) -> str:
    return str(_get(obj, "metadata", "name") or "")


def _age(obj: dict[str, Any], now: datetime) -> str:
    return age_since(_get(obj, "metadata", "creationTimestamp"), now)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _condition_true(conditions: Any, ctype: str) -> bool | None:
    for cond in conditions or []:
        if isinstance(cond, dict) and cond.get("type") == ctype:
            return cond.get("status") == "True"
    return None


# --- pods -----------------------------------------------------------------------------------------


def _pod_status(pod: dict[str, Any], now: datetime) -> tuple[str, int, str]:
    """(reason shown as STATUS, ready containers, RESTARTS text) by kubectl's printPod rules."""
    status = pod.get("status") or {}
    phase = str(status.get("phase") or "")
    reason = str(status.get("reason") or phase)
    ready = restarts = 0
    last_restart: datetime | None = None
    has_running = False
    for cs in reversed(status.get("containerStatuses") or []):
        restarts += _int(cs.get("restartCount"))
        finished = parse_timestamp(_get(cs, "lastState", "terminated", "finishedAt"))
        if finished is not None and (last_restart is None or finished > last_restart):
            last_restart = finished
        state = cs.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if isinstance(waiting, dict) and waiting.get("reason"):
            reason = str(waiting["reason"])
        elif isinstance(terminated, dict) and terminated.get("reason"):
            reason = str(terminated["reason"])
        elif isinstance(terminated, dict):
            signal = _int(terminated.get("signal"))
            reason = f"Signal:{signal}" if signal else f"ExitCode:{_int(terminated.get('exitCode'))}"
        elif cs.get("ready") and ("running" in state or not state):
            # kubectl needs state.running; a status without any state is taken as running.
            has_running = True
            ready += 1
    if reason == "Completed" and has_running:
        reason = "Running" if _condition_true(status.get("conditions"), "Ready") else "NotReady"
    if _get(pod, "metadata", "deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"
    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({age_since(last_restart, now)} ago)"
    return reason, ready, restarts_text


def pod_row(pod: dict[str, Any], now: datetime, wide: bool) -> list[str]:
    status = pod.get("status") or {}
    total = len(_get(pod, "spec", "containers") or []) or len(status.get("containerStatuses") or [])
    reason, ready, restarts = _pod_status(pod, now)
    row = [_name(pod), f"{ready}/{total}", reason, restarts, _age(pod, now)]
    if wide:
        ips = status.get("podIPs") or []
        ip = (ips[0].get("ip") if ips and isinstance(ips[0], dict) else None) or status.get("podIP") or NONE
        gates = _get(pod, "spec", "readinessGates") or []
        gates_text = NONE
        if gates:
            true = sum(1 for g in gates if _condition_true(status.get("conditions"), g.get("conditionType")))
            gates_text = f"{true}/{len(gates)}"
        row += [str(ip), str(_get(pod, "spec", "nodeName") or NONE),
                str(status.get("nominatedNodeName") or NONE), gates_text]
    return row


# --- deployments ----------------------------------------------------------------------------------


def deployment_row(dep: dict[str, Any], now: datetime, wide: bool) -> list[str]:
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    desired = spec.get("replicas")
    desired = 1 if desired is None else _int(desired)  # the API server defaults replicas to 1
    row = [_name(dep), f"{_int(status.get('readyReplicas'))}/{desired}", str(_int(status.get("updatedReplicas"))),
           str(_int(status.get("availableReplicas"))), _age(dep, now)]
    if wide:
        containers = _get(spec, "template", "spec", "containers") or []
        try:
            selector = selector_string(spec.get("selector"))
        except ValueError:
            selector = "<error>"
        row += [",".join(str(c.get("name", "")) for c in containers),
                ",".join(str(c.get("image", "")) for c in containers), selector]
    return row


def event_row(ev: dict[str, Any], now: datetime, wide: bool) -> list[str]:
    """kubectl get events: LAST SEEN TYPE REASON OBJECT MESSAGE."""
    involved = ev.get("involvedObject") or {}
    last = {"metadata": {"creationTimestamp": ev.get("lastTimestamp")}}
    return [_age(last, now), str(ev.get("type", "")), str(ev.get("reason", "")),
            f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}", str(ev.get("message", ""))]


def replicaset_row(rs: dict[str, Any], now: datetime, wide: bool) -> list[str]:
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    row = [_name(rs), str(_int(spec.get("replicas"))), str(_int(status.get("replicas"))),
           str(_int(status.get("readyReplicas"))), _age(rs, now)]
    if wide:
        containers = _get(spec, "template", "spec", "containers") or []
        try:
            selector = selector_string(spec.get("selector"))
        except ValueError:
            selector = "<error>"
        row += [",".join(str(c.get("name", "")) for c in containers),
                ",".join(str(c.get("image", "")) for c in containers), selector]
    return row


# --- nodes ----------------------------------------------------------------------------------------


def _node_roles(labels: dict[str, Any]) -> str:
    roles = set()
    for key, value in labels.items():
        if key.startswith("node-role.kubernetes.io/"):
            role = key[len("node-role.kubernetes.io/"):]
            if role:
                roles.add(role)
        elif key == "kubernetes.io/role" and value:
            roles.add(str(value))
    return ",".join(sorted(roles)) or NONE


def _node_address(node: dict[str, Any], kind: str) -> str:
    for addr in _get(node, "status", "addresses") or []:
        if isinstance(addr, dict) and addr.get("type") == kind:
            return str(addr.get("address", ""))
    return NONE


def node_row(node: dict[str, Any], now: datetime, wide: bool) -> list[str]:
    ready = _condition_true(_get(node, "status", "conditions"), "Ready")
    states = ["Unknown"] if ready is None else ["Ready" if ready else "NotReady"]
    if _get(node, "spec", "unschedulable"):
        states.append("SchedulingDisabled")
    info = _get(node, "status", "nodeInfo") or {}
    row = [_name(node), ",".join(states), _node_roles(_get(node, "metadata", "labels") or {}), _age(node, now),
           str(info.get("kubeletVersion") or "")]
    if wide:
        cidrs = _get(node, "spec", "podCIDRs") or ([_get(node, "spec", "podCIDR")] if _get(node, "spec", "podCIDR") else [])
        row += [_node_address(node, "InternalIP"), _node_address(node, "ExternalIP"),
                str(info.get("osImage") or "<unknown>"), str(info.get("kernelVersion") or "<unknown>"),
                str(info.get("containerRuntimeVersion") or "<unknown>"), ",".join(cidrs) or NONE]
    return row


# --- namespaces, services, policies, anything else ------------------------------------------------


def namespace_row(ns: dict[str, Any], now: datetime, wide: bool) -> list[str]:
    phase = _get(ns, "status", "phase") or ("Terminating" if _get(ns, "metadata", "deletionTimestamp") else "Active")
    return [_name(ns), str(phase), _age(ns, now)]


def _service_ports(ports: list[dict[str, Any]]) -> str:
    pieces = []
    for port in ports:
        protocol = port.get("protocol") or "TCP"
        if _int(port.get("nodePort")) > 0:
            pieces.append(f"{_int(port.get('port'))}:{_int(port.get('nodePort'))}/{protocol}")
        else:
            pieces.append(f"{_int(port.get('port'))}/{protocol}")
    return ",".join(pieces) or NONE


def _load_balancer_ips(svc: dict[str, Any], wide: bool) -> str:
    found = set()
    for ingress in _get(svc, "status", "loadBalancer", "ingress") or []:
        if ingress.get("ip"):
            found.add(str(ingress["ip"]))
        elif ingress.get("hostname"):
            found.add(str(ingress["hostname"]))
    text = ",".join(sorted(found))
    if not wide and len(text) > 16:  # kubectl's loadBalancerWidth
        text = text[:13] + "..."
    return text


def _service_external_ip(svc: dict[str, Any], wide: bool) -> str:
    spec = svc.get("spec") or {}
    svc_type = spec.get("type") or "ClusterIP"
    external = [str(ip) for ip in spec.get("externalIPs") or []]
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external) or NONE
    if svc_type == "LoadBalancer":
        lb = _load_balancer_ips(svc, wide)
        if external:
            return ",".join(([*lb.split(",")] if lb else []) + external)
        return lb or "<pending>"
    if svc_type == "ExternalName":
        return str(spec.get("externalName") or "")
    return "<unknown>"


def service_row(svc: dict[str, Any], now: datetime, wide: bool) -> list[str]:
    spec = svc.get("spec") or {}
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    row = [_name(svc), str(spec.get("type") or "ClusterIP"), str(cluster_ips[0]) if cluster_ips else NONE,
           _service_external_ip(svc, wide), _service_ports(spec.get("ports") or []), _age(svc, now)]
    if wide:
        row.append(format_labels(spec.get("selector")))
    return row


def _first_few(items: list[str], count: int, empty: str, limit: int = 3) -> str:
    """kubectl's lists in a cell: at most ``limit`` items, then `` + N more...``."""
    if not items:
        return empty
    text = ",".join(items[:limit])
    return text + (f" + {count - limit} more..." if count > limit else "")


def endpoints_row(ep: dict[str, Any], now: datetime, wide: bool) -> list[str]:
    found: list[str] = []
    for subset in ep.get("subsets") or []:
        ips = [str(a.get("ip") or "") for a in subset.get("addresses") or []]
        ports = subset.get("ports") or []
        found += ips if not ports else [f"{ip}:{_int(p.get('port'))}" for p in ports for ip in ips]
    return [_name(ep), _first_few(found, len(found), NONE), _age(ep, now)]


def endpoint_slice_row(eps: dict[str, Any], now: datetime, wide: bool) -> list[str]:
    ports = [str(p["port"]) if _int(p.get("port")) else "<unset>" for p in eps.get("ports") or []]
    addresses = [str(a) for e in eps.get("endpoints") or [] for a in e.get("addresses") or []]
    return [_name(eps), str(eps.get("addressType") or ""), _first_few(ports, len(ports), "<unset>"),
            _first_few(addresses, len(addresses), "<unset>"), _age(eps, now)]


def network_policy_row(pol: dict[str, Any], now: datetime, wide: bool) -> list[str]:
    return [_name(pol), format_label_selector(_get(pol, "spec", "podSelector") or {}), _age(pol, now)]


def cilium_policy_row(pol: dict[str, Any], now: datetime, wide: bool) -> list[str]:
    valid = next((str(c.get("status", "")) for c in _get(pol, "status", "conditions") or []
                  if isinstance(c, dict) and c.get("type") == "Valid"), "")
    return [_name(pol), _age(pol, now), valid]


def _condition(obj: dict[str, Any], ctype: str, field: str) -> str:
    return next((str(c.get(field, "")) for c in _get(obj, "status", "conditions") or []
                 if isinstance(c, dict) and c.get("type") == ctype), NONE)


def ip_pool_row(pool: dict[str, Any], now: datetime, wide: bool) -> list[str]:
    """Cilium's printer columns: spec.disabled, the PoolConflict status, the IPsAvailable count."""
    disabled = "true" if _get(pool, "spec", "disabled") is True else "false"
    return [_name(pool), disabled, _condition(pool, "cilium.io/PoolConflict", "status"),
            _condition(pool, "cilium.io/IPsAvailable", "message"), _age(pool, now)]


def lease_row(lease: dict[str, Any], now: datetime, wide: bool) -> list[str]:
    return [_name(lease), str(_get(lease, "spec", "holderIdentity") or ""), _age(lease, now)]


def configmap_row(cm: dict[str, Any], now: datetime, wide: bool) -> list[str]:
    count = len(_get(cm, "data") or {}) + len(_get(cm, "binaryData") or {})
    return [_name(cm), str(count), _age(cm, now)]


def secret_row(s: dict[str, Any], now: datetime, wide: bool) -> list[str]:
    return [_name(s), str(_get(s, "type") or "Opaque"), str(len(_get(s, "data") or {})), _age(s, now)]


def generic_row(obj: dict[str, Any], now: datetime, wide: bool) -> list[str]:
    return [_name(obj), _age(obj, now)]


KINDS: dict[str, KindColumns] = {
    "pods": KindColumns(True, ("NAME", "READY", "STATUS", "RESTARTS", "AGE"),
                        ("IP", "NODE", "NOMINATED NODE", "READINESS GATES"), pod_row),
    "deployments": KindColumns(True, ("NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"),
                               ("CONTAINERS", "IMAGES", "SELECTOR"), deployment_row),
    "events": KindColumns(True, ("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"), (), event_row),
    "replicasets": KindColumns(True, ("NAME", "DESIRED", "CURRENT", "READY", "AGE"),
                               ("CONTAINERS", "IMAGES", "SELECTOR"), replicaset_row),
    "nodes": KindColumns(False, ("NAME", "STATUS", "ROLES", "AGE", "VERSION"),
                         ("INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME",
                          "POD-CIDR"), node_row),
    "namespaces": KindColumns(False, ("NAME", "STATUS", "AGE"), (), namespace_row),
    "services": KindColumns(True, ("NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"),
                            ("SELECTOR",), service_row),
    "endpoints": KindColumns(True, ("NAME", "ENDPOINTS", "AGE"), (), endpoints_row),
    "configmaps": KindColumns(True, ("NAME", "DATA", "AGE"), (), configmap_row),
    "secrets": KindColumns(True, ("NAME", "TYPE", "DATA", "AGE"), (), secret_row),
    "endpointslices": KindColumns(True, ("NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"), (),
                                  endpoint_slice_row),
    "networkpolicies": KindColumns(True, ("NAME", "POD-SELECTOR", "AGE"), (), network_policy_row),
    "ciliumnetworkpolicies": KindColumns(True, ("NAME", "AGE", "VALID"), (), cilium_policy_row),
    "ciliumclusterwidenetworkpolicies": KindColumns(False, ("NAME", "AGE", "VALID"), (), cilium_policy_row),
    "ciliumloadbalancerippools": KindColumns(False, ("NAME", "DISABLED", "CONFLICTING", "IPS AVAILABLE", "AGE"), (),
                                             ip_pool_row),
    "leases": KindColumns(True, ("NAME", "HOLDER", "AGE"), (), lease_row),
}

ALIASES = {
    "pod": "pods", "po": "pods",
    "deployment": "deployments", "deploy": "deployments",
    "replicaset": "replicasets", "rs": "replicasets",
    "event": "events", "ev": "events",
    "node": "nodes", "no": "nodes",
    "namespace": "namespaces", "ns": "namespaces",
    "service": "services", "svc": "services",
    "ep": "endpoints", "endpointslice": "endpointslices",
    "configmap": "configmaps", "cm": "configmaps", "secret": "secrets",
    "networkpolicy": "networkpolicies", "netpol": "networkpolicies",
    "ciliumnetworkpolicy": "ciliumnetworkpolicies", "cnp": "ciliumnetworkpolicies",
    "ciliumclusterwidenetworkpolicy": "ciliumclusterwidenetworkpolicies",
    "ccnp": "ciliumclusterwidenetworkpolicies",
    "ciliumloadbalancerippool": "ciliumloadbalancerippools", "ippools": "ciliumloadbalancerippools",
    "ippool": "ciliumloadbalancerippools", "lbippool": "ciliumloadbalancerippools",
    "lbippools": "ciliumloadbalancerippools", "lease": "leases",
}


def resolve_kind(kind: str) -> str:
    """Canonical plural for a plural, singular, short name or Kind (``Pod``, ``po``, ``cnp``…)."""
    lowered = kind.lower()
    return ALIASES.get(lowered, lowered)
