"""``membrane apply -f`` and ``membrane delete``: manifests into the cluster store and out of it (kubectl apply/delete)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from membrane.cli import target as cli_target
from membrane.cli.arguments import CLIError, check_namespace, resolve_kind, resource_ref, split_resource_names
from membrane.model.errors import ValidationError
from membrane.model.kinds import KindInfo, lookup_kind


def add_parsers(sub: Any, lab_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("apply", help="create or update resources from files (kubectl apply)")
    lab_arg(p)
    p.set_defaults(handler=cmd_apply)  # main dispatches to the handler its sub-parser set
    p.add_argument("-f", "--filename", action="append", required=True, help="file, directory or - for stdin")
    p.add_argument("-n", "--namespace", default=None)

    p = sub.add_parser("delete", help="delete resources by file or by kind and name")
    lab_arg(p)
    p.set_defaults(handler=cmd_delete)  # main dispatches to the handler its sub-parser set
    p.add_argument("-f", "--filename", action="append")
    p.add_argument("-n", "--namespace", default=None)
    p.add_argument("--ignore-not-found", action="store_true")
    p.add_argument("--grace-period", type=int, default=-1, help="seconds pods get to stop (-1: their own setting)")
    p.add_argument("--now", action="store_true", help="pods get 1 second to stop")
    p.add_argument("--force", action="store_true", help="with --grace-period=0: remove pods at once")
    p.add_argument("--wait", nargs="?", const="true", default="true", choices=("true", "false"),
                   help="wait until deleted pods are gone (default true)")
    p.add_argument("kind", nargs="?")
    p.add_argument("names", nargs="*")


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
        print(f"{resource_ref(info)}/{obj['metadata']['name']} {outcome}")
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
            print(f'{resource_ref(info)} "{name}" deleted')
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
