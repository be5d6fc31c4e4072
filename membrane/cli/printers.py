"""kubectl-style output for ``membrane get``: tables (default and ``-o wide``), ``-o yaml`` and ``-o json``.

Objects are plain JSON dicts as stored (``metadata``, ``spec``, ``status``). Tables follow kubectl's
columns for each kind (see membrane.cli.resource_columns), its AGE rules (membrane.cli.age) and its
alignment (Go tabwriter, 3 spaces between columns, the last column unpadded). Rows keep the order they
are given in (the store returns them by namespace, then name, as the API server does).

Every function returns text without a trailing newline: ``print()`` it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import yaml

from membrane.cli.age import format_age
from membrane.cli.dbg_printers import render_endpoint_list, render_status
from membrane.cli.resource_columns import KINDS, KindColumns, generic_row, resolve_kind
from membrane.cli.tabwriter import kubectl_table

# render_endpoint_list/render_status (cilium-dbg style) live in membrane.cli.dbg_printers; re-exported here.
__all__ = ["format_age", "is_namespaced", "no_resources_message", "render_endpoint_list", "render_objects",
           "render_status", "render_table"]


def _columns(kind: str, objects: list[dict[str, Any]]) -> KindColumns:
    canonical = resolve_kind(kind)
    if canonical in KINDS:
        return KINDS[canonical]
    # Any other kind prints like a CRD without printer columns: NAME AGE.
    namespaced = any((o.get("metadata") or {}).get("namespace") for o in objects)
    return KindColumns(namespaced, ("NAME", "AGE"), (), generic_row)


def is_namespaced(kind: str) -> bool | None:
    """True/False for the kinds with kubectl columns; None for any other kind."""
    columns = KINDS.get(resolve_kind(kind))
    return None if columns is None else columns.namespaced


def no_resources_message(kind: str, namespace: str = "default", all_namespaces: bool = False) -> str:
    """What kubectl prints to stderr for an empty list."""
    namespaced = is_namespaced(kind)
    if namespaced is not False and not all_namespaces:
        return f"No resources found in {namespace} namespace."
    return "No resources found"


def render_table(
    kind: str,
    objects: list[dict[str, Any]],
    wide: bool,
    all_namespaces: bool,
    now: datetime,
    namespace: str = "default",
) -> str:
    """The table for ``membrane get <kind>`` (``-o wide`` with ``wide``, ``-A`` with ``all_namespaces``).

    For an empty list it returns kubectl's ``No resources found…`` message instead, which the caller
    prints to stderr (check ``objects`` to tell the two apart). ``namespace`` only words that message.
    """
    columns = _columns(kind, objects)
    if not objects:
        return no_resources_message(kind, namespace, all_namespaces)
    with_namespace = all_namespaces and columns.namespaced
    header = list(columns.headers) + (list(columns.wide_headers) if wide else [])
    rows = [(["NAMESPACE"] if with_namespace else []) + header]
    for obj in objects:
        row = columns.row(obj, now, wide)
        if with_namespace:
            row = [str((obj.get("metadata") or {}).get("namespace") or "")] + row
        rows.append(row)
    return kubectl_table(rows)


def render_objects(objects: list[dict[str, Any]], fmt: str, single: bool) -> str:
    """``-o yaml``/``-o json``: one object as itself (``single``), otherwise a ``v1 List``.

    JSON is indented by 4 spaces like kubectl; YAML keeps the objects' key order. Raises ValueError for
    an unknown format or when ``single`` is asked for with other than exactly one object.
    """
    if fmt not in ("yaml", "json"):
        raise ValueError(f"output format {fmt!r}: expected yaml or json")
    if single:
        if len(objects) != 1:
            raise ValueError(f"single object requested but {len(objects)} objects given")
        doc: Any = objects[0]
    else:
        doc = {"apiVersion": "v1", "items": list(objects), "kind": "List", "metadata": {"resourceVersion": ""}}
    if fmt == "json":
        return json.dumps(doc, indent=4, ensure_ascii=False)
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return text[:-1] if text.endswith("\n") else text
