"""``membrane get``: list resources as kubectl get prints them, tables or -o formats, and -w to follow changes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from membrane.cli import target as cli_target
from membrane.cli.arguments import (
    CLIError,
    check_namespace,
    parse_selector,
    resolve_kind,
    split_resource_names,
)
from membrane.model.kinds import KindInfo


def add_parser(sub: Any, lab_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("get", help="list resources (kubectl get)")
    lab_arg(p)
    p.set_defaults(handler=cmd_get)  # main dispatches to the handler its sub-parser set
    p.add_argument("kind", help="kind, or several separated by commas (pods,svc)")
    p.add_argument("names", nargs="*")
    p.add_argument("-n", "--namespace", default=None)
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-o", "--output", help="wide|yaml|json|name|jsonpath=TEMPLATE|custom-columns=SPEC")
    p.add_argument("-l", "--selector", default=None, help="label selector (k=v,k!=v,k)")
    p.add_argument("--show-labels", action="store_true")
    p.add_argument("--no-headers", action="store_true", help="print tables without their header line")
    p.add_argument("--sort-by", default=None, metavar="JSONPATH", help="sort by a field, e.g. .metadata.name")
    p.add_argument("--field-selector", default=None, help="e.g. spec.nodeName=k8s-w1,status.phase!=Running")
    p.add_argument("-w", "--watch", action="store_true", help="after listing, print objects as they change")


def cmd_get(args: argparse.Namespace) -> int:
    from membrane.cli import cilium_kinds, get_support
    from membrane.cli.printers import render_objects, render_table

    check_namespace(args.namespace)
    output = get_support.check_output(args.output) if args.output else None
    kind, args.names = split_resource_names(args.kind, args.names)
    args.kind = kind or ""
    selector = parse_selector(args.selector) if args.selector else None
    if cilium_kinds.handles(args.kind):  # CiliumEndpoints / CiliumIdentities: synthesised, not stored
        return cilium_kinds.run_get(args)
    kinds = get_support.kinds(args.kind, resolve_kind)
    if not kinds:
        raise CLIError("You must specify the type of resource to get.")
    fields = {info.kind: get_support.parse_field_selector(args.field_selector, info)
              for info in kinds} if args.field_selector else {}
    if args.watch and (len(kinds) != 1 or output not in (None, "wide")):
        raise CLIError("watch is only supported on a single resource type, with the table output")
    store = cli_target.cluster_store(args.lab)
    now = datetime.now(UTC)
    collected: list[dict[str, Any]] = []
    rc = 0
    blocks = []
    for info in kinds:
        ns = None if (args.all_namespaces or not info.namespaced) else (args.namespace or "default")
        if args.names:
            objs = []
            for name in args.names:
                obj = get_support.get_one(store, info, ns or "", name)
                if obj is None:
                    print(f'Error from server (NotFound): {info.plural} "{name}" not found', file=sys.stderr)
                    rc = 1
                else:
                    objs.append(obj)
        else:
            objs = get_support.list_objects(store, info, ns)
        if selector is not None:
            objs = [o for o in objs if selector.matches(o.get("metadata", {}).get("labels") or {})]
        if fields.get(info.kind):
            objs = [o for o in objs if get_support.field_match(o, fields[info.kind])]
        if args.sort_by:
            objs = get_support.sort_by(objs, args.sort_by)
        collected.extend(objs)
        if output not in (None, "wide"):
            continue
        if not objs:
            if not args.names and not (len(kinds) > 1 and args.kind == "all"):
                scope = f" in {ns} namespace" if ns else ""
                blocks.append(("", f"No resources found{scope}."))
            continue
        shown = get_support.prefixed(info, objs) if len(kinds) > 1 else objs
        table = render_table(info.kind, shown, wide=output == "wide",
                             all_namespaces=bool(args.all_namespaces and info.namespaced), now=now)
        if args.show_labels:
            table = _append_labels(table, objs)
        if args.no_headers:
            table = table.split("\n", 1)[1] if "\n" in table else ""
        blocks.append((table, ""))
    if output in ("yaml", "json"):
        single = len(kinds) == 1 and len(args.names) == 1 and len(collected) == 1
        print(render_objects(collected, output, single=single))
        return rc
    if output is not None and output != "wide":
        single = len(kinds) == 1 and len(args.names) == 1 and len(collected) == 1
        text = get_support.render_other(output, collected, single, headers=not args.no_headers)
        if text:
            print(text, end="" if output.startswith("jsonpath=") else "\n")
        elif not collected and not args.names:
            print("No resources found.", file=sys.stderr)
        return rc
    if not blocks and args.kind == "all":
        scope = "" if args.all_namespaces else f" in {args.namespace or 'default'} namespace"
        blocks.append(("", f"No resources found{scope}."))
    first = True
    for table, empty in blocks:
        if empty:
            print(empty, file=sys.stderr)
            continue
        if not first:
            print()
        print(table.rstrip("\n"))
        first = False
    if args.watch:
        _watch(args, store, kinds[0], selector, fields, output == "wide")
    return rc


def _watch(args: argparse.Namespace, store: Any, info: KindInfo, selector: Any, fields: dict[str, Any],
           wide: bool) -> None:
    from membrane.cli import get_support
    from membrane.cli.printers import render_table

    ns = None if (args.all_namespaces or not info.namespaced) else (args.namespace or "default")

    def keep(obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return (selector is None or selector.matches(labels)) and get_support.field_match(obj, fields.get(info.kind, []))

    def row(obj: dict[str, Any]) -> str:
        table = render_table(info.kind, [obj], wide=wide, all_namespaces=bool(args.all_namespaces and info.namespaced),
                             now=datetime.now(UTC))
        return table.rstrip("\n").split("\n", 1)[-1]

    sys.stdout.flush()
    seen = [o for o in get_support.list_objects(store, info, ns) if keep(o)]
    get_support.watch(store, info, ns, seen, keep, row)


def _append_labels(table: str, objs: list[dict[str, Any]]) -> str:
    lines = table.rstrip("\n").split("\n")
    width = max(len(line) for line in lines) + 3
    out = [lines[0].ljust(width) + "LABELS"]
    for line, obj in zip(lines[1:], objs, strict=False):
        labels = obj.get("metadata", {}).get("labels") or {}
        out.append(line.ljust(width) + (",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>"))
    return "\n".join(out)
