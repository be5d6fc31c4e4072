"""HostPort frontends: a pod's ``containers[].ports[].hostPort`` served by the node's LB maps (as Cilium does,
with no portmap plugin).

For every pod scheduled on ``node`` (every pod without ``node``) that has a pod IP, is not in a terminal
phase (Succeeded/Failed) and does not use the host network (there the port is already the node's), each
container port with a ``hostPort`` > 0 gives one frontend per address:

* ``hostIP`` unset or ``0.0.0.0``: every InternalIP/ExternalIP of the pod's node (``frontends.node_ips``),
* any other ``hostIP``: that address only,

at ``hostPort``/protocol, type ``HostPort``, with the single backend ``podIP:containerPort``. The owner is
``<namespace>/<pod>/host-port/<hostPort>`` (Cilium's service name for it). A pod being deleted
(``deletionTimestamp``) keeps its frontend with the backend marked ``terminating`` (existing connections
only). Only TCP and UDP ports are mapped (the datapath balances nothing else).

Two pods claiming the same address (the scheduler prevents it; hand-placed pods may not): the pod created
first (then by namespace/name) keeps it. A HostPort frontend on the address of a Service frontend (e.g. a
hostPort inside the NodePort range) is dropped: the Service wins.

``node_frontends_with_hostports`` is ``frontends.node_frontends`` plus these, sharing one ``ServiceIDs`` —
use it instead of calling the two separately, because ``node_frontends`` frees the IDs of every frontend it
did not produce.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from membrane.loadbalancer.frontends import (
    Backend,
    Frontend,
    ServiceIDs,
    exclusive,
    node_ips,
    service_frontends,
)

HOST_PORT = "HostPort"
HOSTPORT_PROTOCOLS = ("TCP", "UDP")
_TERMINAL_PHASES = ("Succeeded", "Failed")
_UNSPECIFIED = ("", "0.0.0.0")


def _node_of(pod: dict[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


def _eligible(pod: dict[str, Any], node: str | None) -> bool:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    if node is not None and _node_of(pod) != node:
        return False
    return bool(_node_of(pod) and status.get("podIP") and not spec.get("hostNetwork")
                and status.get("phase") not in _TERMINAL_PHASES)


def _age_key(pod: dict[str, Any]) -> tuple[str, str, str]:
    meta = pod.get("metadata") or {}
    return (str(meta.get("creationTimestamp") or ""), str(meta.get("namespace") or "default"), str(meta.get("name")))


def hostport_frontends(pods: Iterable[dict[str, Any]], nodes: Iterable[dict[str, Any]], ids: ServiceIDs,
                       node: str | None = None) -> list[Frontend]:
    """The HostPort frontends of the pods on ``node`` (see the module docstring), sorted by ID.
    Allocates IDs from ``ids`` but frees none (see ``node_frontends_with_hostports``)."""
    node_list = list(nodes)
    out: dict[tuple[str, int, str], Frontend] = {}
    for pod in sorted((p for p in pods if _eligible(p, node)), key=_age_key):
        meta, pod_node = pod.get("metadata") or {}, _node_of(pod)
        namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name"))
        pod_ip = str(pod["status"]["podIP"])
        terminating = bool(meta.get("deletionTimestamp"))
        for container in (pod.get("spec") or {}).get("containers") or []:
            for port in container.get("ports") or []:
                host_port = port.get("hostPort")
                protocol = str(port.get("protocol") or "TCP")
                container_port = port.get("containerPort")
                if (not isinstance(host_port, int) or host_port <= 0 or protocol not in HOSTPORT_PROTOCOLS
                        or not isinstance(container_port, int)):
                    continue
                host_ip = str(port.get("hostIP") or "")
                addresses = node_ips(node_list, pod_node) if host_ip in _UNSPECIFIED else [host_ip]
                for ip in addresses:
                    key = (ip, host_port, protocol)
                    if key in out:
                        continue  # an older pod holds it
                    backend = Backend(ids.backends.get((pod_ip, container_port, protocol)), pod_ip, container_port,
                                      protocol, pod_node, terminating=terminating)
                    out[key] = Frontend(ids.frontends.get(key), f"{namespace}/{name}/host-port/{host_port}",
                                        HOST_PORT, ip, host_port, protocol, str(port.get("name") or ""), (backend,))
    return sorted(out.values(), key=lambda f: f.id)


def node_frontends_with_hostports(services: Iterable[dict[str, Any]], slices: Iterable[dict[str, Any]],
                                  pods: Iterable[dict[str, Any]], nodes: Iterable[dict[str, Any]], ids: ServiceIDs,
                                  node: str | None = None) -> list[Frontend]:
    """Every admitted Service's frontend for ``node`` (see ``frontends.node_frontends``) and the HostPort
    frontends of its pods, sorted by ID; a HostPort on a Service frontend's address is left out. Frees the IDs of frontends and backends that are gone."""
    slice_list, node_list = list(slices), list(nodes)
    out = [fe for svc in exclusive(services) for fe in service_frontends(svc, slice_list, node_list, ids, node)]
    taken = {(f.ip, f.port, f.protocol) for f in out}
    # a dropped HostPort shares its frontend ID key with the Service's; retain() frees its backend's if unused
    out += [fe for fe in hostport_frontends(pods, node_list, ids, node) if (fe.ip, fe.port, fe.protocol) not in taken]
    ids.retain(out)
    return sorted(out, key=lambda f: f.id)
