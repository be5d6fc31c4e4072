"""``membrane logs``, ``scale`` and ``wait``: kubectl's verbs for workloads, on the lab's store and files.

``logs`` reads the container's log file the lab runtime writes (``/run/membrane/<lab>/logs/pods/``);
``scale`` changes a Deployment's ``spec.replicas`` (compare-and-swap on its revision); ``wait`` polls
the store until every named object meets ``--for=condition=TYPE[=VALUE]`` or ``--for=delete``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import Any

from membrane.cli.arguments import CLIError, check_name, check_namespace, parse_selector, split_resource_names

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?$")


def add_parsers(sub: Any, lab_arg: Any) -> None:
    p = sub.add_parser("logs", help="print a pod container's log (kubectl logs)")
    p.set_defaults(handler=run)
    lab_arg(p)
    p.add_argument("pod", help="POD, pod/POD or deployment/NAME (one of its pods)")
    p.add_argument("-n", "--namespace", default=None)
    p.add_argument("-c", "--container", default=None)
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-p", "--previous", action="store_true", help="the log of the container's previous instance")
    p.add_argument("--tail", type=int, default=-1, help="lines from the end (-1: all)")

    p = sub.add_parser("scale", help="set a Deployment's replicas (kubectl scale)")
    p.set_defaults(handler=run)
    lab_arg(p)
    p.add_argument("kind", help="deployment NAME or deployment/NAME")
    p.add_argument("names", nargs="*")
    p.add_argument("--replicas", required=True)
    p.add_argument("-n", "--namespace", default=None)

    p = sub.add_parser("wait", help="wait until resources meet a condition (kubectl wait)")
    p.set_defaults(handler=run)
    lab_arg(p)
    p.add_argument("kind", help="KIND [NAME...] or KIND/NAME")
    p.add_argument("names", nargs="*")
    p.add_argument("--for", dest="for_", required=True, metavar="condition=TYPE[=VALUE]|delete")
    p.add_argument("--timeout", default="30s", help="how long to wait (30s, 2m, 1h; default 30s)")
    p.add_argument("-n", "--namespace", default=None)
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-l", "--selector", default=None)
    p.add_argument("--all", action="store_true", help="every object of the kind in the namespace")


def parse_duration(text: str) -> float:
    """kubectl's durations: ``30s``, ``2m``, ``1h30m``, ``0``; a bare number is seconds."""
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    m = _DURATION.match(text)
    if not text or m is None or not any(m.groups()):
        raise CLIError(f'invalid argument "{text}" for "--timeout" flag: time: invalid duration "{text}"')
    h, mins, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mins * 60 + s


def parse_for(text: str) -> tuple[str, str, str]:
    """``--for`` -> ("condition", TYPE, VALUE) or ("delete", "", "")."""
    if text == "delete":
        return "delete", "", ""
    if text.startswith("condition="):
        ctype, _, value = text.removeprefix("condition=").partition("=")
        if ctype:
            return "condition", ctype, value or "true"
    raise CLIError(f"unrecognized condition: {text!r} (use --for=condition=Ready or --for=delete)")


def condition_met(obj: dict[str, Any], ctype: str, value: str) -> bool:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if str(c.get("type", "")).lower() == ctype.lower():
            return str(c.get("status", "")).lower() == value.lower()
    return False


def run(args: argparse.Namespace) -> int:
    return {"logs": cmd_logs, "scale": cmd_scale, "wait": cmd_wait}[args.command](args)


# ---- logs -------------------------------------------------------------------------------------------------
def cmd_logs(args: argparse.Namespace) -> int:
    from membrane.cli.lab_cmds import pod_log_path
    from membrane.cli.target import cluster_store

    check_namespace(args.namespace)
    ns = args.namespace or "default"
    kind, _, name = args.pod.rpartition("/")
    check_name(name)
    store = cluster_store(args.lab)
    if kind in ("deploy", "deployment", "deployments", "deployment.apps"):
        pod = _deployment_pod(store, ns, name)
        name = pod["metadata"]["name"]
    elif kind in ("", "pod", "pods", "po"):
        pod = store.get("core", "Pod", ns, name)
    else:
        raise CLIError(f"cannot get logs of {kind}: give a pod or deployment/NAME")
    if pod is None:
        raise CLIError(f'pods "{name}" not found')
    containers = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
    container = args.container
    if container is None:
        if len(containers) != 1:
            raise CLIError(f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]")
        container = containers[0]
    elif container not in containers:
        raise CLIError(f"container {container} is not valid for pod {name}")
    path = pod_log_path(args.lab, ns, name, container)
    if args.previous:
        if args.follow:
            raise CLIError("only one of follow (-f) or previous (-p) is allowed")
        path += ".previous"
    try:
        fh = open(path, "rb")  # noqa: SIM115 (kept open while following)
    except FileNotFoundError:
        if args.previous:
            raise CLIError(f'previous terminated container "{container}" in pod "{name}" not found') from None
        raise CLIError(f'container "{container}" in pod "{name}" is waiting to start: no log yet') from None
    with fh:
        data = fh.read()
        if args.tail >= 0:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[len(lines) - args.tail:]) if args.tail else b""
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        while args.follow:
            chunk = fh.read()
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            elif not os.path.exists(path):
                break
            else:
                time.sleep(0.2)
    return 0


def _deployment_pod(store: Any, ns: str, name: str) -> dict[str, Any]:
    """kubectl's choice for ``logs deployment/NAME``: one of its pods, saying which when there are several."""
    from membrane.model.deployment import owned_by

    dep = store.get("apps", "Deployment", ns, name)
    if dep is None:
        raise CLIError(f'deployments.apps "{name}" not found')
    pods = sorted((p for p in store.list("core", "Pod", ns)[0] if owned_by(p, dep)), key=lambda p: p["metadata"]["name"])
    if not pods:
        raise CLIError(f"timed out waiting for the condition: deployment {name} has no pods")
    if len(pods) > 1:
        print(f"Found {len(pods)} pods, using pod/{pods[0]['metadata']['name']}", file=sys.stderr)
    return pods[0]


# ---- scale ------------------------------------------------------------------------------------------------
def cmd_scale(args: argparse.Namespace) -> int:
    from membrane.cli.arguments import resolve_kind
    from membrane.cli.target import cluster_store

    check_namespace(args.namespace)
    kind, names = split_resource_names(args.kind, args.names)
    if not re.fullmatch(r"\d+", args.replicas) or int(args.replicas) > 2**31 - 1:
        raise CLIError(f"invalid argument {args.replicas!r} for --replicas: a non-negative integer is required")
    replicas = int(args.replicas)
    info = resolve_kind(kind or "")
    if info.kind != "Deployment":
        raise CLIError(f"cannot scale {info.plural}: only deployments can be scaled here")
    if not names:
        raise CLIError("resource(s) were provided, but no name was specified")
    store = cluster_store(args.lab)
    ns = args.namespace or "default"
    rc = 0
    for name in names:
        for _attempt in range(5):
            obj = store.get("apps", "Deployment", ns, name)
            if obj is None:
                print(f'Error from server (NotFound): deployments.apps "{name}" not found', file=sys.stderr)
                rc = 1
                break
            obj["spec"]["replicas"] = replicas
            try:
                store.put_object(obj, expected_revision=int(obj["metadata"]["resourceVersion"]))
            except Exception:
                continue
            print(f"deployment.apps/{name} scaled")
            break
        else:
            raise CLIError(f"deployment {name} kept changing; try again")
    return rc


# ---- wait -------------------------------------------------------------------------------------------------
def cmd_wait(args: argparse.Namespace) -> int:
    from membrane.cli import get_support
    from membrane.cli.arguments import resolve_kind
    from membrane.cli.target import cluster_store

    check_namespace(args.namespace)
    kind, names = split_resource_names(args.kind, args.names)
    mode, ctype, value = parse_for(args.for_)
    timeout = parse_duration(args.timeout)
    selector = parse_selector(args.selector)
    infos = get_support.kinds(kind or "", resolve_kind)
    if len(infos) != 1:
        raise CLIError("wait takes one resource type")
    info = infos[0]
    if not names and not args.all and selector is None:
        raise CLIError("resource(s) were provided, but no name was specified")
    store = cluster_store(args.lab)
    ns = None if (args.all_namespaces or not info.namespaced) else (args.namespace or "default")
    ref = info.kind.lower() if info.group == "core" else f"{info.kind.lower()}.{info.group}"
    if names:
        pending = {(ns or "", n) for n in names}
    else:
        objs = get_support.list_objects(store, info, ns)
        if selector is not None:
            objs = [o for o in objs if selector.matches((o.get("metadata") or {}).get("labels") or {})]
        pending = {(o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objs}
        if not pending:
            raise CLIError("no matching resources found")
    deadline = time.monotonic() + timeout
    while True:
        for key in sorted(pending):
            obj = get_support.get_one(store, info, key[0], key[1])
            if mode == "delete" and obj is None:
                print(f"{ref}/{key[1]} condition met")
                pending.discard(key)
            elif obj is None and names and mode == "condition":
                raise CLIError(f'{info.plural} "{key[1]}" not found')
            elif mode == "condition" and obj is not None and condition_met(obj, ctype, value):
                print(f"{ref}/{key[1]} condition met")
                pending.discard(key)
        if not pending:
            return 0
        if time.monotonic() >= deadline:
            for key in sorted(pending):
                print(f"error: timed out waiting for the condition on {info.plural}/{key[1]}", file=sys.stderr)
            return 1
        time.sleep(0.3)
