"""``membrane delete`` of Pods as the API server does it: graceful. A pod is marked with
``deletionTimestamp`` and ``deletionGracePeriodSeconds`` (``--grace-period``, else its
``terminationGracePeriodSeconds``) and shows as Terminating; the lab's kubelet stops its containers
(SIGTERM, SIGKILL after the grace period) and removes the object, which ``delete`` waits for unless
``--wait=false``. ``--grace-period=0 --force`` removes it at once. Other kinds are removed at once.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any

from membrane.cli.arguments import CLIError
from membrane.model.kinds import KindInfo

WAIT_MARGIN = 30.0  # seconds beyond the grace period before delete stops waiting


def grace_of(args: argparse.Namespace) -> int | None:
    """The grace period asked for, None for the pods' own; kubectl's rules for --now/--force."""
    if args.now:
        if args.grace_period >= 0:
            raise CLIError("--now and --grace-period cannot be specified together")
        return 1
    if args.force and args.grace_period != 0:
        raise CLIError("--force requires --grace-period=0 here (immediate removal)")
    return None if args.grace_period < 0 else args.grace_period


def delete_targets(store: Any, targets: list[tuple[KindInfo, str, str]], args: argparse.Namespace) -> list[bool]:
    """Delete every target; Pods gracefully. Returns, per target, whether it existed."""
    grace = grace_of(args)
    immediate = [(i, t) for i, t in enumerate(targets) if t[0].kind != "Pod" or grace == 0]
    found = [False] * len(targets)
    if immediate:
        results = store.delete_many([(info.group, info.kind, ns or "_", name) for _i, (info, ns, name) in immediate])
        for (i, _t), ok in zip(immediate, results, strict=True):
            found[i] = ok
    marked: list[tuple[str, str, str, float]] = []
    for i, (info, ns, name) in enumerate(targets):
        if info.kind != "Pod" or grace == 0:
            continue
        pod = _mark(store, ns, name, grace)
        found[i] = pod is not None
        if pod is not None:
            meta = pod["metadata"]
            marked.append((ns, name, meta.get("uid", ""), float(meta.get("deletionGracePeriodSeconds") or 0)))
    if marked and args.wait == "true":
        _wait_gone(store, marked)
    return found


def _mark(store: Any, ns: str, name: str, grace: int | None) -> dict[str, Any] | None:
    for _attempt in range(5):
        pod = store.get("core", "Pod", ns, name)
        if pod is None:
            return None
        meta = pod["metadata"]
        # already terminating: only a shorter grace period changes anything
        if meta.get("deletionTimestamp") and (grace is None or grace >= int(meta.get("deletionGracePeriodSeconds") or 0)):
            return pod
        meta["deletionTimestamp"] = meta.get("deletionTimestamp") or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        own = int((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        meta["deletionGracePeriodSeconds"] = own if grace is None else grace
        try:
            return store.put_object(pod, expected_revision=int(meta["resourceVersion"]))
        except Exception:
            continue
    raise CLIError(f"pod {ns}/{name} kept changing; try again")


def _wait_gone(store: Any, marked: list[tuple[str, str, str, float]]) -> None:
    deadline = time.monotonic() + max(g for *_rest, g in marked) + WAIT_MARGIN
    pending = list(marked)
    while pending and time.monotonic() < deadline:
        still = []
        for ns, name, uid, grace in pending:
            pod = store.get("core", "Pod", ns, name)
            if pod is not None and pod["metadata"].get("uid") == uid:
                still.append((ns, name, uid, grace))
        pending = still
        if pending:
            time.sleep(0.2)
    for ns, name, _uid, _grace in pending:
        print(f"error: timed out waiting for pod {ns}/{name} to terminate (is the kubelet running?)", file=sys.stderr)
