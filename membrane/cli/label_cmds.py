"""``membrane label KIND NAME k=v k-``: add, change or remove labels (kubectl label)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from membrane.cli import target as cli_target
from membrane.cli.arguments import CLIError, check_name, check_namespace, resolve_kind, resource_ref
from membrane.model.errors import ValidationError


def add_parser(sub: Any, lab_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("label", help="add, change or remove labels (kubectl label)")
    lab_arg(p)
    p.set_defaults(handler=cmd_label)  # main dispatches to the handler its sub-parser set
    p.add_argument("kind")
    p.add_argument("name")
    p.add_argument("labels", nargs="+", help="k=v to set, k- to remove")
    p.add_argument("-n", "--namespace", default=None)
    p.add_argument("--overwrite", action="store_true")


def cmd_label(args: argparse.Namespace) -> int:
    from membrane.model.labels import apply_label_changes, parse_label_assignments

    check_namespace(args.namespace)
    check_name(args.name)
    info = resolve_kind(args.kind)
    ns = (args.namespace or "default") if info.namespaced else ""
    try:
        changes = parse_label_assignments(args.labels)
    except ValidationError as exc:
        raise CLIError(str(exc)) from None
    store = cli_target.cluster_store(args.lab)
    for _attempt in range(5):
        obj = store.get(info.group, info.kind, ns, args.name)
        if obj is None:
            raise CLIError(f'{info.plural} "{args.name}" not found')
        try:
            new_labels = apply_label_changes(obj["metadata"].get("labels") or {}, changes, overwrite=args.overwrite)
        except ValidationError as exc:
            raise CLIError(str(exc)) from None
        if new_labels == (obj["metadata"].get("labels") or {}):
            print(f"{resource_ref(info)}/{args.name} not labeled")
            return 0
        obj["metadata"]["labels"] = new_labels
        try:
            store.put_object(obj, expected_revision=int(obj["metadata"]["resourceVersion"]))
        except Exception:
            continue
        print(f"{resource_ref(info)}/{args.name} labeled")
        return 0
    raise CLIError("the object kept changing; try again")
