"""Pod status as Kubernetes shows it: phase, reason, conditions, container statuses, IPs.

Pure functions of the pod, its sandbox and what the runtime observed, so the kubelet can compare
the result with what it last wrote and skip needless store writes.
"""

from __future__ import annotations

from typing import Any

from membrane.lab.runtime import Sandbox


def declared_tcp_ports(container: dict[str, Any]) -> list[int]:
    """The TCP ``containerPort``s of a container: it is ready once all of them listen."""
    return [p["containerPort"] for p in container.get("ports", []) or [] if p.get("protocol", "TCP") == "TCP"]


def needs_listening_ports(pod: dict[str, Any]) -> bool:
    """Whether any container's readiness depends on listening ports (reading a pod's /proc/<pid>/net/tcp
    walks the kernel's whole TCP table: done for every pod on every pass it made pod starts O(n²))."""
    return any(declared_tcp_ports(c) for c in pod.get("spec", {}).get("containers", []))


def container_statuses(pod: dict[str, Any], sb: Sandbox, listening: set[int],
                       image_errors: dict[tuple[str, str], tuple[str, str]]) -> list[dict[str, Any]]:
    out = []
    for c in pod["spec"]["containers"]:
        name = c["name"]
        st: dict[str, Any] = {"name": name, "image": c["image"], "restartCount": sb.restarts.get(name, 0)}
        err = image_errors.get((sb.uid, name))
        if err:
            st.update(ready=False, started=False, state={"waiting": {"reason": err[0], "message": err[1]}})
        elif name in sb.containers:
            ready = all(p in listening for p in declared_tcp_ports(c))
            st.update(ready=ready, started=True, state={"running": {}})
        else:
            st.update(ready=False, started=False, state={"waiting": {"reason": "ContainerCreating"}})
        out.append(st)
    return out


def pod_status(pod: dict[str, Any], sb: Sandbox | None, statuses: list[dict[str, Any]] | dict[str, Any],
               reason: str, message: str, scheduled: bool = True, host_ip: str = "") -> dict[str, Any]:
    if sb is None or not isinstance(statuses, list):
        status: dict[str, Any] = {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True" if scheduled else "False",
                            **({"reason": "Unschedulable", "message": message} if not scheduled else {})}],
            "containerStatuses": [
                {"name": c["name"], "image": c["image"], "ready": False, "restartCount": 0, "started": False,
                 "state": {"waiting": {"reason": reason or "ContainerCreating"}}}
                for c in pod["spec"]["containers"]
            ] if scheduled else [],
        }
        if scheduled:
            status["reason"] = reason or "ContainerCreating"
        if message:
            status["message"] = message
        return status
    waiting = [s["state"]["waiting"] for s in statuses if "waiting" in s["state"]]
    all_ready = all(s["ready"] for s in statuses)
    status = {
        "phase": "Running" if not waiting else "Pending",
        "podIP": sb.ip,
        "podIPs": [{"ip": sb.ip}] if sb.ip else [],
        "hostIP": host_ip,
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": "True" if all_ready else "False"},
            {"type": "Ready", "status": "True" if all_ready else "False"},
        ],
        "containerStatuses": statuses,
    }
    if waiting:
        status["reason"] = waiting[0].get("reason", "")
        if waiting[0].get("message"):
            status["message"] = waiting[0]["message"]
    return status
