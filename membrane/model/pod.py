"""Pods: validation of the Pod kind and small typed accessors the kubelet and agents use."""

from __future__ import annotations

from typing import Any, NamedTuple

from membrane.model.podspec import check_pod_spec


def check_pod(obj: dict[str, Any]) -> None:
    """Validate a Pod's spec in place (metadata is checked by the caller)."""
    obj["spec"] = check_pod_spec({} if obj.get("spec") is None else obj["spec"], "spec")
    if obj.get("status") is None:
        obj.pop("status", None)


class ContainerPort(NamedTuple):
    """One declared container port."""

    container: str
    name: str  # "" when the port is unnamed
    port: int
    protocol: str  # TCP, UDP or SCTP


def pod_key(pod: dict[str, Any]) -> str:
    """``namespace/name``."""
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', 'default')}/{meta.get('name', '')}"


def pod_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """The regular containers (not init containers), in spec order."""
    return list((pod.get("spec") or {}).get("containers") or [])


def container_ports(pod: dict[str, Any]) -> list[ContainerPort]:
    """Every declared port of every regular container, in spec order."""
    return [
        ContainerPort(c.get("name", ""), p.get("name", ""), int(p["containerPort"]), p.get("protocol", "TCP"))
        for c in pod_containers(pod)
        for p in c.get("ports") or []
    ]


def named_port(pod: dict[str, Any], name: str, protocol: str | None = None) -> int | None:
    """The number behind a port name (Service ``targetPort: http``, policy ``port: http``), or None."""
    for port in container_ports(pod):
        if port.name == name and (protocol is None or port.protocol == protocol):
            return port.port
    return None


def pod_labels(pod: dict[str, Any]) -> dict[str, str]:
    return dict((pod.get("metadata") or {}).get("labels") or {})


def pod_service_account(pod: dict[str, Any]) -> str:
    """``serviceAccountName``, else the deprecated ``serviceAccount``, else ``default``."""
    spec = pod.get("spec") or {}
    return spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"


def pod_node_name(pod: dict[str, Any]) -> str:
    """The node the pod is bound to, "" while unscheduled."""
    return str((pod.get("spec") or {}).get("nodeName") or "")


def pod_host_network(pod: dict[str, Any]) -> bool:
    return bool((pod.get("spec") or {}).get("hostNetwork"))


def pod_is_terminating(pod: dict[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def pod_is_ready(pod: dict[str, Any]) -> bool:
    """True when the pod's ``Ready`` condition is ``True``."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False
