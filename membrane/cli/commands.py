"""Command implementations behind ``membrane``: dispatch, resources (apply/delete/get/label), exec."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from membrane.cli import target as cli_target
from membrane.cli.arguments import CLIError, check_name, check_namespace, parse_selector, split_resource_names
from membrane.model.errors import ValidationError
from membrane.model.kinds import KindInfo, lookup_kind
from membrane.model.naming import pod_hostname

__all__ = ["CLIError", "dispatch"]


def dispatch(args: argparse.Namespace) -> int:
    """The handler the command's sub-parser registered (``set_defaults(handler=...)`` in its
    module's ``add_parser``), else the commands below, which are registered in main itself."""
    handler = getattr(args, "handler", None)
    if handler is not None:
        return int(handler(args))
    cmd = args.command
    if cmd == "version":
        print("membrane 0.1.0")
        return 0
    if cmd == "completion":  # argcomplete's script, which calls membrane back with _ARGCOMPLETE set
        import argcomplete

        print(argcomplete.shellcode(["membrane"], shell=args.shell), end="")
        return 0
    if cmd == "lab":
        from membrane.cli import lab_cmds

        return lab_cmds.run(args)
    if cmd == "identity":
        from membrane.cli import identity_cmds

        return identity_cmds.run(args)
    if cmd == "status" and args.node is None:
        from membrane.cli import cluster_status

        return cluster_status.run(args)
    if cmd in ("status", "dbg", "endpoint", "service"):
        from membrane.cli import node_cmds

        return node_cmds.run(args)
    handlers = {"apply": cmd_apply, "delete": cmd_delete, "get": cmd_get, "label": cmd_label, "exec": cmd_exec}
    return handlers[cmd](args)


def _resource_ref(info: KindInfo) -> str:
    return info.plural.rstrip("s") if info.group == "core" else f"{info.kind.lower()}.{info.group}"


def _load_located(filenames: list[str], namespace: str | None) -> list[tuple[str, dict[str, Any]]]:
    """(where, validated object) for every manifest of ``-f``."""
    from membrane.cli.manifests import load_paths
    from membrane.model.validate import validate_object

    return [
        (where, validate_object(raw, where, default_namespace=namespace or "default",
                                enforce_namespace=namespace is not None))
        for where, raw in load_paths(filenames)
    ]


def _load(filenames: list[str], namespace: str | None) -> list[dict[str, Any]]:
    return [obj for _where, obj in _load_located(filenames, namespace)]


def _update_checker(located: list[tuple[str, dict[str, Any]]]) -> Any:
    """``check_update`` for apply_many, blaming the file and document of the refused object."""
    from membrane.model.update import check_update

    where_of = {id(obj): where for where, obj in located}

    def check(old: dict[str, Any], new: dict[str, Any]) -> None:
        try:
            check_update(old, new)
        except ValidationError as exc:
            raise exc.within(where_of.get(id(new), "")) from None

    return check


# ---- apply / delete ------------------------------------------------------------------------------------
def cmd_apply(args: argparse.Namespace) -> int:
    check_namespace(args.namespace)
    try:
        located = _load_located(args.filename, args.namespace)
    except ValidationError as exc:
        raise CLIError(str(exc)) from None
    except OSError as exc:
        raise CLIError(f"{exc.filename}: {exc.strerror}") from None
    objs = [obj for _where, obj in located]
    if not objs:
        raise CLIError("no objects passed to apply")
    for obj in objs:
        info = lookup_kind(obj["kind"])
        if info.read_only:
            raise CLIError(f"{obj['kind']} {obj['metadata']['name']}: is managed by the cluster and cannot be applied")
    store = cli_target.cluster_store(args.lab)
    _check_namespaces(store, objs)
    _keep_bindings(store, objs)
    try:
        results = store.apply_many(objs, check_update=_update_checker(located))
    except ValidationError as exc:  # an immutable field changed: the API server's message, nothing stored
        raise CLIError(str(exc)) from None
    except Exception as exc:
        raise CLIError(f"apply failed, nothing was stored: {exc}") from None
    from membrane.cli.policy_cmds import apply_warnings, lab_host_firewall

    for line in apply_warnings(objs, lab_host_firewall(store)):  # accepted but not enforced: said, never silent (exit 0 as kubectl)
        print(line, file=sys.stderr)
    for obj, outcome in results:
        info = lookup_kind(obj["kind"])
        print(f"{_resource_ref(info)}/{obj['metadata']['name']} {outcome}")
    return 0


def _keep_bindings(store: Any, objs: list[dict[str, Any]]) -> None:
    """A re-applied Pod keeps the node it was bound to (kubectl apply leaves fields it did not set)."""
    for obj in objs:
        if obj["kind"] != "Pod" or obj.get("spec", {}).get("nodeName"):
            continue
        old = store.get("core", "Pod", obj["metadata"]["namespace"], obj["metadata"]["name"])
        if old and old.get("spec", {}).get("nodeName"):
            obj["spec"]["nodeName"] = old["spec"]["nodeName"]


def _check_namespaces(store: Any, objs: list[dict[str, Any]]) -> None:
    created = {o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"}
    existing = {n["metadata"]["name"] for n in store.list("core", "Namespace")[0]}
    for obj in objs:
        ns = obj.get("metadata", {}).get("namespace")
        if ns and ns not in created and ns not in existing:
            raise CLIError(f'namespaces "{ns}" not found (needed by {obj["kind"]} {obj["metadata"]["name"]}); nothing was stored')


def cmd_delete(args: argparse.Namespace) -> int:
    check_namespace(args.namespace)
    args.kind, args.names = split_resource_names(args.kind, args.names)
    info = resolve_kind(args.kind) if args.kind and not args.filename else None
    store = cli_target.cluster_store(args.lab)
    targets: list[tuple[KindInfo, str, str]] = []
    if args.filename:
        if args.kind:
            raise CLIError("give either -f FILE or KIND NAME, not both")
        try:
            objs = _load(args.filename, args.namespace)
        except ValidationError as exc:
            raise CLIError(str(exc)) from None
        for obj in objs:
            info = lookup_kind(obj["kind"])
            targets.append((info, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]))
    else:
        if info is None or not args.names:
            raise CLIError("usage: membrane delete KIND NAME... [-n NS] or membrane delete -f FILE")
        ns = (args.namespace or "default") if info.namespaced else ""
        targets = [(info, ns, name) for name in args.names]
    for info, _ns, name in targets:
        if info.read_only:
            raise CLIError(f"{info.kind} {name}: is managed by the cluster and cannot be deleted")
    from membrane.cli.pod_deletion import delete_targets

    found = delete_targets(store, targets, args)
    rc = 0
    for (info, _ns, name), ok in zip(targets, found, strict=True):
        if ok:
            print(f'{_resource_ref(info)} "{name}" deleted')
        elif not args.ignore_not_found:
            print(f'Error from server (NotFound): {info.plural}.{info.group if info.group != "core" else ""}'
                  .rstrip(".") + f' "{name}" not found', file=sys.stderr)
            rc = 1
    deleted_ns = [name for (info, _ns, name), ok in zip(targets, found, strict=True) if ok and info.kind == "Namespace"]
    if deleted_ns:
        _delete_namespaced_objects(store, deleted_ns)
    return rc


def _delete_namespaced_objects(store: Any, namespaces: list[str]) -> None:
    """Deleting a Namespace deletes what is in it, as Kubernetes' namespace controller does."""
    from membrane.model.kinds import KINDS

    keys = []
    for info in KINDS:
        if not info.namespaced:
            continue
        for ns in namespaces:
            for obj in store.list(info.group, info.kind, ns)[0]:
                keys.append((info.group, info.kind, ns, obj["metadata"]["name"]))
    if keys:
        store.delete_many(keys)


def resolve_kind(name: str) -> KindInfo:
    try:
        return lookup_kind(name)
    except ValidationError as exc:
        raise CLIError(str(exc)) from None


# ---- get ---------------------------------------------------------------------------------------------
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


# ---- label -------------------------------------------------------------------------------------------
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
            print(f"{_resource_ref(info)}/{args.name} not labeled")
            return 0
        obj["metadata"]["labels"] = new_labels
        try:
            store.put_object(obj, expected_revision=int(obj["metadata"]["resourceVersion"]))
        except Exception:
            continue
        print(f"{_resource_ref(info)}/{args.name} labeled")
        return 0
    raise CLIError("the object kept changing; try again")


# ---- exec --------------------------------------------------------------------------------------------
def cmd_exec(args: argparse.Namespace) -> int:
    from membrane.cli.lab_cmds import lab_exists, pod_sandbox_pids

    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    check_namespace(args.namespace)
    check_name(args.pod)
    if not cmd:
        raise CLIError("usage: membrane exec [-n NS] POD -- COMMAND [ARGS...]")
    ns = args.namespace or "default"
    if not lab_exists(args.lab):
        raise CLIError(f"lab {args.lab!r} not found")
    # The sandbox records are local to the lab: exec works even while the cluster store is down.
    pid = pod_sandbox_pids(args.lab, ns).get((ns, args.pod))
    if pid is None:
        pod = cli_target.cluster_store(args.lab).get("core", "Pod", ns, args.pod)
        if pod is None:
            raise CLIError(f'pods "{args.pod}" not found in namespace {ns}')
        phase = pod.get("status", {}).get("phase", "Pending")
        raise CLIError(f"pod {ns}/{args.pod} has no running sandbox (phase {phase})")
    argv = ["nsenter", "-t", str(pid), "--net", "--uts", "--mount", "--", *cmd]
    env = dict(os.environ, HOSTNAME=pod_hostname(args.pod))
    sys.stdout.flush()
    try:
        os.execvpe("nsenter", argv, env)
    except OSError as exc:
        raise CLIError(f"exec failed: {exc}") from None
    return 0  # not reached


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))
