"""What LB-IPAM writes back: pool status conditions and the Services' address and condition.

Conditions keep their ``lastTransitionTime`` while their status does not change (Kubernetes'
meta.SetStatusCondition). The functions return the new status, or None when nothing changes, so the
operator writes only what differs.
"""

from __future__ import annotations

import copy
from typing import Any

from membrane.lbipam.allocator import ServiceResult
from membrane.lbipam.pools import Pool

SERVICE_CONDITION = "cilium.io/IPAMRequestSatisfied"
LEGACY_SERVICE_CONDITION = "io.cilium/lb-ipam-request-satisfied"
POOL_CONFLICT = "cilium.io/PoolConflict"
IPS_TOTAL, IPS_AVAILABLE, IPS_USED = "cilium.io/IPsTotal", "cilium.io/IPsAvailable", "cilium.io/IPsUsed"


def set_condition(conditions: list[dict[str, Any]], new: dict[str, Any], now: str) -> list[dict[str, Any]]:
    """``conditions`` with ``new`` (type, status, reason, message, …) in place of its type."""
    out = [dict(c) for c in conditions if isinstance(c, dict)]
    for cond in out:
        if cond.get("type") == new["type"]:
            when = cond.get("lastTransitionTime") if cond.get("status") == new["status"] else now
            cond.clear()
            cond.update({**new, "lastTransitionTime": when or now})
            return out
    out.append({**new, "lastTransitionTime": now})
    return out


def pool_status(pool: Pool, used: int, current: dict[str, Any] | None, now: str) -> dict[str, Any] | None:
    conds = list((current or {}).get("conditions") or [])
    gen = pool.generation
    conflict = {"type": POOL_CONFLICT, "status": "True" if pool.conflict else "False",
                "reason": "cidr_overlap" if pool.conflict else "resolved", "message": pool.conflict,
                "observedGeneration": gen}
    conds = set_condition(conds, conflict, now)
    total = pool.total
    for ctype, value in ((IPS_TOTAL, total), (IPS_AVAILABLE, max(0, total - used)), (IPS_USED, used)):
        conds = set_condition(conds, {"type": ctype, "status": "Unknown", "reason": "noreason",
                                      "message": str(value), "observedGeneration": gen}, now)
    new = {**(current or {}), "conditions": conds}
    return None if new == (current or {}) else new


def service_status(svc: dict[str, Any], result: ServiceResult, now: str) -> dict[str, Any] | None:
    """The Service's new status, or None if it stays as it is."""
    current = svc.get("status") or {}
    status = copy.deepcopy(current)
    conds = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    if not result.handled:
        mine = [c for c in conds if c.get("type") in (SERVICE_CONDITION, LEGACY_SERVICE_CONDITION)]
        if not mine:
            return None  # never ours: whatever its status holds was written by someone else
        conds = [c for c in conds if c not in mine]
        status.pop("loadBalancer", None)
    else:
        assert result.verdict is not None
        v = result.verdict
        conds = set_condition(conds, {"type": SERVICE_CONDITION, "status": v.status, "reason": v.reason,
                                      "message": v.message}, now)
        status["loadBalancer"] = {"ingress": [{"ip": ip} for ip in result.ips]} if result.ips else {}
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)
    return None if status == current else status
