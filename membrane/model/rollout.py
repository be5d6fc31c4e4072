"""Rolling updates of Deployments, as the Kubernetes deployment controller does them: how many pods a
rollout may add above ``replicas`` (``maxSurge``, default 25% rounded up) and take below it
(``maxUnavailable``, default 25% rounded down), and the revision history that ``rollout undo`` uses.

Kubernetes keeps old templates in ReplicaSets; the lab has none, so the controller keeps the last
``REVISION_LIMIT`` templates in the Deployment's ``status.revisions`` (apply keeps status).
"""

from __future__ import annotations

import copy
import math
from typing import Any

REVISION_LIMIT = 10  # spec.revisionHistoryLimit's default


def _scaled(value: Any, desired: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        exact = desired * int(value[:-1]) / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value)


def _rolling(deploy: dict[str, Any]) -> dict[str, Any]:
    return ((deploy.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}


def is_recreate(deploy: dict[str, Any]) -> bool:
    return ((deploy.get("spec") or {}).get("strategy") or {}).get("type") == "Recreate"


def surge_and_unavailable(deploy: dict[str, Any], desired: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as pod counts; never both 0 (the API server refuses that, so 1 unavailable)."""
    if is_recreate(deploy):
        return 0, desired
    rolling = _rolling(deploy)
    surge = _scaled(rolling.get("maxSurge", "25%"), desired, round_up=True)
    unavailable = _scaled(rolling.get("maxUnavailable", "25%"), desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def rolling_step(desired: int, surge: int, unavailable: int, new: int, new_ready: int, old_ready: int,
                 old_unready: int) -> tuple[int, int, int]:
    """One controller pass of a rollout: (new pods to create, old unready pods to delete, old ready pods
    to delete). Counts are of live (not terminating) pods; the deployment controller's arithmetic:
    total never above desired + maxSurge, available never below desired - maxUnavailable."""
    total = new + old_ready + old_unready
    create = max(0, min(desired - new, desired + surge - total))
    min_available = desired - unavailable
    max_down = max(0, total - min_available - (new - new_ready))
    drop_unready = min(old_unready, max_down)
    drop_ready = max(0, min(old_ready, new_ready + old_ready - min_available, max_down - drop_unready))
    return create, drop_unready, drop_ready


def record_revision(history: list[dict[str, Any]] | None, template_hash: str,
                    template: dict[str, Any]) -> list[dict[str, Any]]:
    """The history with ``template`` as the newest revision: a template seen before (an undo) moves
    to the top with a new number, as Kubernetes renumbers the ReplicaSet it goes back to."""
    entries = [dict(e) for e in history or [] if isinstance(e, dict)]
    if entries and entries[-1].get("hash") == template_hash:
        return entries
    top = max((int(e.get("revision", 0)) for e in entries), default=0)
    entries = [e for e in entries if e.get("hash") != template_hash]
    entries.append({"revision": top + 1, "hash": template_hash, "template": copy.deepcopy(template)})
    return entries[-REVISION_LIMIT:]


def undo_target(history: list[dict[str, Any]] | None, to_revision: int = 0) -> dict[str, Any]:
    """The revision ``rollout undo`` goes back to: ``to_revision``, or the one before the newest."""
    entries = [e for e in history or [] if isinstance(e, dict)]
    if to_revision:
        for e in entries:
            if int(e.get("revision", 0)) == to_revision:
                return e
        raise LookupError(f"unable to find specified revision {to_revision} in history")
    if len(entries) < 2:
        raise LookupError("no rollout history found for deployment")
    return entries[-2]
