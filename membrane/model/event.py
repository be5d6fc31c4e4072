"""Kubernetes Events: what a component tells about an object (``Scheduled``, ``FailedScheduling``,
``FailedCreatePodSandBox``, ``PolicyImportFailed`` …), shown by ``get events`` and ``describe``.

An event's name is ``<object>.<hash of reason and message>``, so the same occurrence recorded again
bumps ``count`` and ``lastTimestamp`` of one object instead of adding another, as the event recorder's
aggregation does. Events older than ``TTL_SECONDS`` are collected (the API server's default, one hour).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

TTL_SECONDS = 3600
NORMAL, WARNING = "Normal", "Warning"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_name(obj: dict[str, Any], reason: str, message: str) -> str:
    digest = hashlib.sha1(f"{obj.get('kind')}\0{reason}\0{message}".encode()).hexdigest()[:16]
    return f"{obj['metadata']['name']}.{digest}"[:253]


def make_event(obj: dict[str, Any], type_: str, reason: str, message: str, component: str, host: str = "",
               previous: dict[str, Any] | None = None, now: str | None = None) -> dict[str, Any]:
    """The Event object for ``obj`` (a stored resource); ``previous``: the stored event of that name."""
    meta = obj.get("metadata") or {}
    stamp = now or _now()
    first = (previous or {}).get("firstTimestamp") or stamp
    count = int((previous or {}).get("count") or 0) + 1
    involved = {"apiVersion": obj.get("apiVersion", "v1"), "kind": obj.get("kind", ""), "name": meta.get("name", "")}
    if meta.get("namespace"):
        involved["namespace"] = meta["namespace"]
    if meta.get("uid"):
        involved["uid"] = meta["uid"]
    source = {"component": component, **({"host": host} if host else {})}
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": event_name(obj, reason, message), "namespace": meta.get("namespace") or "default"},
            "involvedObject": involved, "reason": reason, "message": message, "type": type_, "source": source,
            "firstTimestamp": first, "lastTimestamp": stamp, "count": count}


def about(events: list[dict[str, Any]], obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The events of one object, oldest first."""
    meta = obj.get("metadata") or {}
    mine = [e for e in events if (e.get("involvedObject") or {}).get("kind") == obj.get("kind")
            and (e.get("involvedObject") or {}).get("name") == meta.get("name")
            and (e.get("involvedObject") or {}).get("namespace", "") == (meta.get("namespace") or "")]
    return sorted(mine, key=lambda e: str(e.get("lastTimestamp") or ""))


def expired(event: dict[str, Any], now: datetime | None = None) -> bool:
    try:
        last = datetime.fromisoformat(str(event.get("lastTimestamp")).replace("Z", "+00:00"))
    except ValueError:
        return True
    return ((now or datetime.now(UTC)) - last).total_seconds() > TTL_SECONDS
