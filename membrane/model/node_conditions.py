"""A Node's ``Ready`` and ``NetworkUnavailable`` conditions from its agent's health.

The agent marks its node up when it is ready (``NetworkUnavailable=False`` with Cilium's reason
``CiliumIsUp``, and ``Ready=True``: the lab has no kubelet heartbeat, the agent is the node's); the
operator marks it down when the agent's liveness key (a 15-second lease) is gone, as Kubernetes'
node lifecycle controller does for a silent kubelet (``Ready=Unknown``, ``NodeStatusUnknown``). The
datapath keeps forwarding with its last state meanwhile; what is unavailable is new pod networking.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

UP = {
    "NetworkUnavailable": ("False", "CiliumIsUp", "Cilium is running on this node"),
    "Ready": ("True", "MembraneAgentReady", "Membrane agent is running"),
}
DOWN = {
    "NetworkUnavailable": ("True", "MembraneAgentNotRunning",
                           "Membrane agent stopped posting node status; new pods cannot get networking"),
    "Ready": ("Unknown", "NodeStatusUnknown", "Membrane agent stopped posting node status."),
}


def agent_conditions(conditions: list[dict[str, Any]], agent_up: bool, now: str) -> list[dict[str, Any]] | None:
    """The node's conditions with the agent's health applied, or None when nothing changes.

    ``lastTransitionTime`` moves only when a condition's status changes; other conditions are kept.
    """
    want = UP if agent_up else DOWN
    out = [dict(c) for c in conditions]
    changed = False
    for ctype, (status, reason, message) in want.items():
        cur = next((c for c in out if c.get("type") == ctype), None)
        if cur is None:
            out.append({"type": ctype, "status": status, "reason": reason, "message": message,
                        "lastTransitionTime": now})
            changed = True
        elif (cur.get("status"), cur.get("reason"), cur.get("message")) != (status, reason, message):
            if cur.get("status") != status:
                cur["lastTransitionTime"] = now
            cur.update(status=status, reason=reason, message=message)
            changed = True
    return out if changed else None


def is_up(conditions: list[dict[str, Any]]) -> bool:
    """Ready=True (a node the operator may have to mark down)."""
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def unreachable(nodes: Iterable[Mapping[str, Any]], me: str) -> int:
    """How many Nodes other than ``me`` are not Ready (``cilium_unreachable_nodes``)."""
    return sum(1 for n in nodes if (n.get("metadata") or {}).get("name") != me
               and not is_up((n.get("status") or {}).get("conditions") or []))
