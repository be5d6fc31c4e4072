"""``membrane rollout status|restart|undo|history deployment/NAME``: kubectl rollout on the lab's
Deployments (rolled by the lab's controller within maxSurge/maxUnavailable, see membrane.model.rollout)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any

from membrane.cli.arguments import CLIError, check_namespace, split_resource_names

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def add_parser(sub: Any, lab_arg: Any) -> None:
    p = sub.add_parser("rollout", help="manage a Deployment's rollout (kubectl rollout)")
    p.set_defaults(handler=run)  # main dispatches to the handler its sub-parser set
    lab_arg(p)
    rsub = p.add_subparsers(dest="rollout_cmd", required=True)
    for verb, text in (("status", "wait for the rollout to finish"), ("restart", "restart every pod, rolling"),
                       ("undo", "go back to the previous (or --to-revision) template"),
                       ("history", "list the revisions")):
        q = rsub.add_parser(verb, help=text)
        lab_arg(q)
        q.add_argument("kind", help="deployment NAME or deployment/NAME")
        q.add_argument("names", nargs="*")
        q.add_argument("-n", "--namespace", default=None)
        if verb == "status":
            q.add_argument("--timeout", default="0s", help="give up after this long (0: wait forever)")
        if verb == "undo":
            q.add_argument("--to-revision", type=int, default=0)


def _target(args: argparse.Namespace) -> tuple[str, str]:
    check_namespace(args.namespace)
    kind, names = split_resource_names(args.kind, args.names)
    if (kind or "").lower() not in ("deployment", "deployments", "deploy", "deployment.apps", "deployments.apps"):
        raise CLIError(f'no rollout for "{kind}": only deployments roll out here')
    if len(names) != 1:
        raise CLIError("rollout takes one deployment name")
    return args.namespace or "default", names[0]


def run(args: argparse.Namespace) -> int:
    from membrane.cli.target import cluster_store
    from membrane.cli.workload_cmds import parse_duration

    ns, name = _target(args)
    timeout = parse_duration(args.timeout) if args.rollout_cmd == "status" else 0.0
    store = cluster_store(args.lab)
    if args.rollout_cmd == "status":
        return _status(store, ns, name, timeout)
    if args.rollout_cmd == "history":
        dep = _get(store, ns, name)
        print(f"deployment.apps/{name}\nREVISION  CHANGE-CAUSE")
        for entry in (dep.get("status") or {}).get("revisions") or []:
            print(f"{entry.get('revision', 0):<10}<none>")
        return 0
    return _change(store, ns, name, args)


def _get(store: Any, ns: str, name: str) -> dict[str, Any]:
    dep = store.get("apps", "Deployment", ns, name)
    if dep is None:
        raise CLIError(f'deployments.apps "{name}" not found')
    return dep


def _change(store: Any, ns: str, name: str, args: argparse.Namespace) -> int:
    from membrane.model.deployment import pod_template_hash
    from membrane.model.rollout import undo_target

    for _attempt in range(5):
        dep = _get(store, ns, name)
        template = dep["spec"]["template"]
        if args.rollout_cmd == "restart":
            meta = template.setdefault("metadata", {})
            meta["annotations"] = {**(meta.get("annotations") or {}),
                                   RESTARTED_AT: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
            done = "restarted"
        else:
            try:
                target = undo_target((dep.get("status") or {}).get("revisions"), args.to_revision)
            except LookupError as exc:
                raise CLIError(str(exc)) from None
            if target.get("hash") == pod_template_hash(template):
                print(f"deployment.apps/{name} skipped rollback (current template already matches revision "
                      f"{target.get('revision')})")
                return 0
            dep["spec"]["template"] = target["template"]
            done = "rolled back"
        try:
            store.put_object(dep, expected_revision=int(dep["metadata"]["resourceVersion"]))
        except Exception:
            continue
        print(f"deployment.apps/{name} {done}")
        return 0
    raise CLIError(f"deployment {name} kept changing; try again")


def progress(dep: dict[str, Any]) -> tuple[bool, str]:
    """kubectl's rollout status message for a Deployment's status, and whether the rollout is done."""
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    name = dep["metadata"]["name"]
    desired = 1 if spec.get("replicas") is None else int(spec["replicas"])
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    generation = (dep.get("metadata") or {}).get("generation")
    if generation is not None and status.get("observedGeneration", generation) < generation:
        return False, "Waiting for deployment spec update to be observed..."
    if updated < desired:
        return False, (f'Waiting for deployment "{name}" rollout to finish: {updated} out of {desired} new replicas '
                       "have been updated...")
    if total > updated:
        return False, (f'Waiting for deployment "{name}" rollout to finish: {total - updated} old replicas are '
                       "pending termination...")
    if available < updated:
        return False, (f'Waiting for deployment "{name}" rollout to finish: {available} of {updated} updated '
                       "replicas are available...")
    return True, f'deployment "{name}" successfully rolled out'


def _status(store: Any, ns: str, name: str, timeout: float) -> int:
    from membrane.model.deployment import pod_template_hash

    deadline = time.monotonic() + timeout if timeout else None
    last = ""
    while True:
        dep = _get(store, ns, name)
        revisions = (dep.get("status") or {}).get("revisions") or []
        observed = bool(revisions) and revisions[-1].get("hash") == pod_template_hash(dep["spec"]["template"])
        done, message = progress(dep) if observed else (False, "Waiting for deployment spec update to be observed...")
        if message != last:
            print(message, flush=True)
            last = message
        if done:
            return 0
        if deadline is not None and time.monotonic() >= deadline:
            print("error: timed out waiting for the condition", file=sys.stderr)
            return 1
        time.sleep(0.5)
