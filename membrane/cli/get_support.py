"""What ``membrane get`` adds to plain store listing: ``all``, synthesised ReplicaSets, kubectl's
``KIND/NAME`` prefixes when several kinds are listed, and the formats of :mod:`output_formats`."""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable
from typing import Any

from membrane.cli.output_formats import check_output, custom_columns, jsonpath_output, sort_by
from membrane.cli.replicasets import NAMES as RS_NAMES
from membrane.cli.replicasets import REPLICASET, replicasets
from membrane.model.kinds import KindInfo

__all__ = ["check_output", "field_match", "get_one", "kinds", "list_objects", "parse_field_selector", "prefixed", "ref",
           "render_other", "sort_by", "watch"]

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
    objs = store.list(info.group, info.kind, ns)[0]
    if info.kind == "Event":  # oldest first, as kubectl shows them
        objs.sort(key=lambda e: str(e.get("lastTimestamp") or ""))
    return objs


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


# ---- --field-selector --------------------------------------------------------------------------------------
_COMMON_FIELDS = ("metadata.name", "metadata.namespace")
FIELDS = {
    "Pod": (*_COMMON_FIELDS, "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
            "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"),
    "Node": (*_COMMON_FIELDS, "spec.unschedulable"),
}


def parse_field_selector(text: str, info: KindInfo) -> list[tuple[str, bool, str]]:
    """``k=v,k==v,k!=v`` -> (field, equal, value); a field the API server cannot select on is refused
    with its message."""
    from membrane.cli.arguments import CLIError

    out = []
    for part in (p for p in text.split(",") if p):
        m = re.fullmatch(r"([A-Za-z.]+)\s*(==|=|!=)\s*(.*)", part)
        if m is None:
            raise CLIError(f'invalid field selector: "{part}": expected field=value or field!=value')
        field, op, value = m.groups()
        if field not in FIELDS.get(info.kind, _COMMON_FIELDS):
            raise CLIError(f'Unable to find "{info.plural}" that match field selector "{text}": '
                           f"field label not supported: {field}")
        out.append((field, op != "!=", value))
    return out


def field_value(obj: dict[str, Any], field: str) -> str:
    cur: Any = obj
    for key in field.split("."):
        cur = cur.get(key) if isinstance(cur, dict) else None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if cur is None and field == "spec.restartPolicy":
        return "Always"
    return "" if cur is None else str(cur)


def field_match(obj: dict[str, Any], terms: list[tuple[str, bool, str]]) -> bool:
    return all((field_value(obj, f) == v) == eq for f, eq, v in terms)


# ---- get -w --------------------------------------------------------------------------------------------------
def watch(store: Any, info: KindInfo, ns: str | None, seen: list[dict[str, Any]],
          keep: Callable[[dict[str, Any]], bool], row: Callable[[dict[str, Any]], str],
          interval: float = 1.0) -> None:
    """kubectl ``get -w``: after the table, a row for every object that changes, appears or goes
    (its last state), until interrupted. The store is polled; each change prints once."""
    versions = {_key(o): o.get("metadata", {}).get("resourceVersion") for o in seen}
    last = {_key(o): o for o in seen}
    while True:
        time.sleep(interval)
        current = {_key(o): o for o in list_objects(store, info, ns) if keep(o)}
        for key, obj in current.items():
            version = obj.get("metadata", {}).get("resourceVersion")
            if versions.get(key) != version:
                print(row(obj), flush=True)
                versions[key] = version
        for key in [k for k in last if k not in current]:
            print(row(last[key]), flush=True)
            versions.pop(key, None)
        last = current


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")
