"""``toServices`` peers: a Service named (``k8sService``) or selected by its labels
(``k8sServiceSelector``) stands for its backend pods, as in Cilium 1.17+: the Service's own pod
selector becomes an endpoint selector in the Service's namespace, so backends that come and go are
selected by identity with no further translation. A Service without a selector (its backends are
written by hand in Cilium) selects nothing here, as Endpoints are only written by the cluster.

A ``namespace`` left out means the policy's own namespace (any namespace for a clusterwide policy's
``k8sServiceSelector``). The agent translates its policies again whenever a Service's name, labels
or selector change; ``policy simulate`` reads the same Services.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from membrane.model.labels import LabelSelector
from membrane.policy.selector import EndpointSelector

POD_NAMESPACE_KEY = "k8s:io.kubernetes.pod.namespace"


@dataclass(frozen=True)
class ServiceInfo:
    namespace: str
    name: str
    labels: tuple[tuple[str, str], ...] = ()
    selector: tuple[tuple[str, str], ...] | None = None  # None: a Service without a pod selector


ServiceTable = Mapping[tuple[str, str], ServiceInfo]


def service_table(objs: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], ServiceInfo]:
    """(namespace, name) -> what toServices needs of each Service object (others are ignored)."""
    out = {}
    for obj in objs:
        if obj.get("kind") != "Service":
            continue
        meta = obj.get("metadata") or {}
        ns, name = str(meta.get("namespace") or "default"), str(meta.get("name", ""))
        sel = (obj.get("spec") or {}).get("selector")
        out[(ns, name)] = ServiceInfo(ns, name, tuple(sorted((meta.get("labels") or {}).items())),
                                      tuple(sorted(sel.items())) if sel else None)
    return out


def selected_services(entry: Mapping[str, Any], table: ServiceTable, namespace: str) -> list[ServiceInfo]:
    """The Services one ``toServices`` entry names or selects (``namespace``: the policy's; "" clusterwide)."""
    if entry.get("k8sService") is not None:
        ref = entry["k8sService"]
        svc = table.get((ref.get("namespace") or namespace or "default", str(ref.get("serviceName", ""))))
        return [svc] if svc is not None else []
    ref = entry.get("k8sServiceSelector") or {}
    sel = LabelSelector.from_dict(ref.get("selector") or {})
    ns = ref.get("namespace") or namespace
    return [svc for _key, svc in sorted(table.items())
            if (not ns or svc.namespace == ns) and sel.matches(dict(svc.labels))]


def service_peers(entry: Mapping[str, Any], table: ServiceTable, namespace: str) -> list[EndpointSelector]:
    """Endpoint selectors for the backends of the Services one ``toServices`` entry stands for."""
    out = []
    for svc in selected_services(entry, table, namespace):
        if svc.selector is None:
            continue
        labels = {f"k8s:{k}": v for k, v in svc.selector}  # pod labels (Kubernetes keys have no ':')
        labels[POD_NAMESPACE_KEY] = svc.namespace
        out.append(EndpointSelector.from_label_selector(
            LabelSelector.from_dict({"matchLabels": labels}, sources=True)))
    return out
