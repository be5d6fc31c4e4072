"""What ``membrane get`` adds to plain store listing: ``all``, synthesised ReplicaSets, kubectl's
``KIND/NAME`` prefixes when several kinds are listed, and the formats of :mod:`output_formats`."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from membrane.cli.output_formats import check_output, custom_columns, jsonpath_output, sort_by
from membrane.cli.replicasets import NAMES as RS_NAMES
from membrane.cli.replicasets import REPLICASET, replicasets
from membrane.model.kinds import KindInfo

__all__ = ["check_output", "get_one", "kinds", "list_objects", "prefixed", "ref", "render_other", "sort_by"]

ALL = ("pods", "services", "deployments", "replicasets")  # kubectl's "all" among the kinds the lab has


def kinds(arg: str, resolve: Callable[[str], KindInfo]) -> list[KindInfo]:
    out: list[KindInfo] = []
    for name in (k for k in arg.split(",") if k):
        for one in ALL if name.lower() == "all" else (name,):
            info = REPLICASET if one.lower() in RS_NAMES else resolve(one)
            if info not in out:
                out.append(info)
    return out


def list_objects(store: Any, info: KindInfo, ns: str | None) -> list[dict[str, Any]]:
    if info is REPLICASET:
        return replicasets(store.list("apps", "Deployment", ns)[0], store.list("core", "Pod", ns)[0])
    return store.list(info.group, info.kind, ns)[0]


def get_one(store: Any, info: KindInfo, ns: str, name: str) -> dict[str, Any] | None:
    if info is REPLICASET:
        return next((o for o in list_objects(store, info, ns) if o["metadata"]["name"] == name), None)
    return store.get(info.group, info.kind, ns, name)


def ref(obj: dict[str, Any]) -> str:
    """``pod/web``, ``deployment.apps/web``: kubectl's ``-o name`` form."""
    from membrane.model.kinds import lookup_kind

    kind = obj.get("kind", "")
    info = REPLICASET if kind == "ReplicaSet" else lookup_kind(kind)
    resource = info.kind.lower() if info.group == "core" else f"{info.kind.lower()}.{info.group}"
    return f"{resource}/{obj['metadata']['name']}"


def prefixed(info: KindInfo, objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies whose names read ``pod/NAME``: how kubectl names rows when it lists several kinds."""
    out = []
    for obj in objs:
        shown = copy.copy(obj)
        shown["metadata"] = {**obj.get("metadata", {}), "name": ref({**obj, "kind": info.kind})}
        out.append(shown)
    return out


def render_other(output: str, objs: list[dict[str, Any]], single: bool, headers: bool) -> str:
    """``-o name``, ``-o jsonpath=…`` (on the object, or on a v1 List) and ``-o custom-columns=…``."""
    if output == "name":
        return "\n".join(ref(o) for o in objs)
    if output.startswith("jsonpath="):
        data: Any = objs[0] if single else {"apiVersion": "v1", "kind": "List", "items": objs,
                                            "metadata": {"resourceVersion": ""}}
        return jsonpath_output(output.removeprefix("jsonpath="), data)
    return custom_columns(output.removeprefix("custom-columns="), objs, headers=headers) if objs else ""
