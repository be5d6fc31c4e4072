"""EndpointSlices (discovery.k8s.io/v1) and legacy v1 Endpoints for a Service, from its pods.

Follows Kubernetes' EndpointSlice controller: pods of the Service's namespace matching its selector,
with an IP and not finished, become endpoints with conditions ``ready`` (pod Ready and not terminating,
or always with ``publishNotReadyAddresses``), ``serving`` (pod Ready) and ``terminating`` (pod has a
``deletionTimestamp``). Ports keep the Service port names; a named targetPort is resolved per pod
from its containers' ports (a pod that lacks it gets no endpoint port for it). Pods whose resolved
ports differ go in different slices; slices hold at most 100 endpoints. Names are deterministic
(``<service>-<hash of the ports>``) so the controller updates slices in place.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
ENDPOINTS_MANAGED_BY_LABEL = "endpoints.kubernetes.io/managed-by"
MANAGED_BY = "membrane"
MAX_ENDPOINTS_PER_SLICE = 100

Ports = tuple[tuple[str, int, str], ...]  # (name, port, protocol) per resolved Service port


def selects(service: dict[str, Any], pod: dict[str, Any]) -> bool:
    """The Service's selector matches the pod (same namespace; a Service without selector selects nothing)."""
    spec = service.get("spec") or {}
    selector = spec.get("selector") or {}
    if not selector or spec.get("type") == "ExternalName":
        return False
    if (pod.get("metadata") or {}).get("namespace") != service["metadata"].get("namespace"):
        return False
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def _pod_ip(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("podIP") or "")


def _pod_ready(pod: dict[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def _resolve_port(pod: dict[str, Any], target: Any, protocol: str) -> int | None:
    if isinstance(target, int):
        return target
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return int(port["containerPort"])
    return None


def pod_ports(service: dict[str, Any], pod: dict[str, Any]) -> Ports:
    """The Service's ports with targetPort resolved for this pod (unresolvable named ports left out)."""
    out = []
    for sp in (service.get("spec") or {}).get("ports") or []:
        protocol = sp.get("protocol") or "TCP"
        port = _resolve_port(pod, sp.get("targetPort", sp.get("port")), protocol)
        if port is not None:
            out.append((str(sp.get("name") or ""), port, protocol))
    return tuple(out)


def candidate_pods(service: dict[str, Any], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Selected pods that have an IP and have not finished, sorted by IP."""
    found = [p for p in pods if selects(service, p) and _pod_ip(p)
             and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    return sorted(found, key=lambda p: (ipaddress.ip_address(_pod_ip(p)), p["metadata"]["name"]))


def _endpoint(service: dict[str, Any], pod: dict[str, Any]) -> dict[str, Any]:
    meta = pod["metadata"]
    ready = _pod_ready(pod)
    terminating = bool(meta.get("deletionTimestamp"))
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    ep: dict[str, Any] = {
        "addresses": [_pod_ip(pod)],
        "conditions": {"ready": publish or (ready and not terminating), "serving": ready, "terminating": terminating},
    }
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        ep["nodeName"] = node
    ep["targetRef"] = {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"], "uid": meta.get("uid", "")}
    return ep


def _slice_name(service_name: str, ports: Ports, index: int) -> str:
    digest = hashlib.sha256(json.dumps(ports).encode()).hexdigest()[:5]
    return f"{service_name}-{digest}" + (f"-{index}" if index else "")


def _owner(service: dict[str, Any]) -> dict[str, Any]:
    meta = service["metadata"]
    return {"apiVersion": "v1", "kind": "Service", "name": meta["name"], "uid": meta.get("uid", ""),
            "controller": True, "blockOwnerDeletion": True}


def endpoint_slices(service: dict[str, Any], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The EndpointSlices the Service should have ([] for ExternalName and selector-less Services).

    A Service whose selector matches no pod gets one empty slice, as Kubernetes does.
    """
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName" or not spec.get("selector"):
        return []
    groups: dict[Ports, list[dict[str, Any]]] = {}
    for pod in candidate_pods(service, pods):
        groups.setdefault(pod_ports(service, pod), []).append(_endpoint(service, pod))
    if not groups:
        groups[()] = []
    meta = service["metadata"]
    slices = []
    for ports, endpoints in sorted(groups.items()):
        chunks = [endpoints[i:i + MAX_ENDPOINTS_PER_SLICE] for i in range(0, len(endpoints), MAX_ENDPOINTS_PER_SLICE)]
        for index, chunk in enumerate(chunks or [[]]):
            slices.append({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": _slice_name(meta["name"], ports, index),
                    "namespace": meta["namespace"],
                    "labels": {SERVICE_NAME_LABEL: meta["name"], MANAGED_BY_LABEL: MANAGED_BY},
                    "ownerReferences": [_owner(service)],
                },
                "addressType": "IPv4",
                "endpoints": chunk,
                "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
            })
    return slices


def legacy_endpoints(service: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The v1 Endpoints object (``kubectl get ep``); None when Kubernetes would not manage one.

    Ready pods go to ``addresses``, not-ready ones to ``notReadyAddresses``; terminating pods are left
    out unless ``publishNotReadyAddresses``.
    """
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName" or not spec.get("selector"):
        return None
    publish = bool(spec.get("publishNotReadyAddresses"))
    subsets: dict[Ports, dict[str, list[dict[str, Any]]]] = {}
    for pod in candidate_pods(service, pods):
        ports = pod_ports(service, pod)
        if not ports:
            continue
        terminating = bool(pod["metadata"].get("deletionTimestamp"))
        if terminating and not publish:
            continue
        address: dict[str, Any] = {"ip": _pod_ip(pod)}
        if (pod.get("spec") or {}).get("nodeName"):
            address["nodeName"] = pod["spec"]["nodeName"]
        address["targetRef"] = _endpoint(service, pod)["targetRef"]
        bucket = "addresses" if publish or _pod_ready(pod) else "notReadyAddresses"
        subsets.setdefault(ports, {}).setdefault(bucket, []).append(address)
    meta = service["metadata"]
    out_subsets = []
    for ports, buckets in sorted(subsets.items()):
        subset: dict[str, Any] = {k: buckets[k] for k in ("addresses", "notReadyAddresses") if k in buckets}
        subset["ports"] = [{"name": n, "port": p, "protocol": proto} if n else {"port": p, "protocol": proto}
                           for n, p, proto in ports]
        out_subsets.append(subset)
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": {
            SERVICE_NAME_LABEL: meta["name"], ENDPOINTS_MANAGED_BY_LABEL: MANAGED_BY}},
        "subsets": out_subsets,
    }
