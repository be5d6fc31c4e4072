"""Helm's verbs on a lab: values flags for ``lab create``, ``lab upgrade``, ``lab values``, ``lab rollout status``.

``membrane lab create|upgrade`` take Helm's flags: ``-f/--values FILE`` (several, merged in order),
``--set`` and ``--set-string`` (last). ``lab upgrade --reuse-values`` starts from the stored values,
as ``helm upgrade --reuse-values`` does; the agents are then restarted one node at a time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from membrane.cli.arguments import CLIError
from membrane.model import helm_values
from membrane.model.errors import ValidationError
from membrane.model.helm_values import Values

DAEMONSET = '"cilium"'  # kubectl names the DaemonSet; so do we, for the seeds' greps


def add_values_args(p: argparse.ArgumentParser) -> None:
    # Helm's own words, so a tutorial's `helm install cilium cilium/cilium --version … --namespace …`
    # runs unchanged as `membrane lab create cilium cilium/cilium …`.
    p.add_argument("release", nargs="?", default=None, help="Helm release name (accepted: the lab has one release)")
    p.add_argument("chart", nargs="?", default=None, help="Helm chart (accepted: the lab runs this checkout)")
    p.add_argument("--version", default=None, dest="chart_version", help="chart version (no effect in the lab)")
    p.add_argument("--namespace", default=None, help="Helm namespace (the agents always run in kube-system)")
    p.add_argument("-f", "--values", action="append", default=[], metavar="FILE",
                   help="Helm values file (YAML); several are merged in order")
    p.add_argument("--set", action="append", default=[], dest="settings", metavar="KEY=VALUE",
                   help="Cilium Helm key, e.g. ipam.mode=kubernetes (a.b=c, lists {a,b}, \\, for a comma)")
    p.add_argument("--set-string", action="append", default=[], dest="string_settings", metavar="KEY=VALUE",
                   help="like --set, but every value stays a string")


def add_lab_parsers(lsub: Any, lab_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    q = lsub.add_parser("upgrade", help="change the values of a running lab and roll the agents (helm upgrade)")
    lab_arg(q)
    q.add_argument("--reuse-values", action="store_true", help="start from the lab's current values")
    add_values_args(q)
    q = lsub.add_parser("values", help="the lab's user-supplied values (helm get values)")
    lab_arg(q)
    q.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table")
    q.add_argument("-a", "--all", action="store_true", help="every value in force, defaults included")
    q = lsub.add_parser("rollout", help="agent rollout: status (kubectl rollout status ds/cilium) or restart")
    lab_arg(q)
    q.add_argument("rollout_cmd", choices=("status", "restart"))
    q.add_argument("--watch", choices=("true", "false"), default="true", help="wait until the rollout is done")
    q.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (with --watch=true)")


def read_values(args: argparse.Namespace) -> tuple[list[Values], list[Values]]:
    """The ``-f`` files and the ``--set``/``--set-string`` flags, parsed; CLIError names the bad one."""
    files = []
    for path in args.values:
        try:
            with open(path) as fh:
                text = fh.read()
        except OSError as exc:
            raise CLIError(f"{path}: {exc.strerror}") from None
        try:
            files.append(helm_values.load_values_file(text, path))
        except ValidationError as exc:
            raise CLIError(str(exc)) from None
    try:
        sets = [helm_values.parse_set(item, where=f"--set {item}") for item in args.settings]
        sets += [helm_values.parse_set(item, string=True, where=f"--set-string {item}")
                 for item in args.string_settings]
    except ValidationError as exc:
        raise CLIError(str(exc)) from None
    return files, sets


def helm_word_warnings(args: argparse.Namespace) -> list[str]:
    """What the lab makes of Helm's release, chart, --version and --namespace."""
    out = []
    if args.chart is not None and args.chart.rsplit("/", 1)[-1] != "cilium":
        out.append(f"chart {args.chart} has no effect: the lab installs this checkout's Membrane in Cilium's place")
    if args.chart_version is not None:
        out.append(f"--version {args.chart_version} has no effect: the lab runs this checkout's Membrane")
    if args.namespace not in (None, "kube-system"):
        out.append(f"--namespace {args.namespace} has no effect: the lab's agents run in kube-system")
    return out


def print_warnings(warnings: list[str]) -> None:
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)


def _progress() -> Callable[[str], None]:
    start = time.monotonic()
    return lambda message: print(f"[{time.monotonic() - start:5.1f}s] {message}", flush=True)


def run(args: argparse.Namespace) -> int:
    handlers = {"upgrade": _upgrade, "values": _values, "rollout": _rollout}
    return handlers[args.lab_cmd](args)


def _upgrade(args: argparse.Namespace) -> int:
    from membrane.lab import release, rollout

    files, sets = read_values(args)
    print_warnings(helm_word_warnings(args))
    try:
        new, changed = release.upgrade(args.lab, files, sets, args.reuse_values)
    except ValidationError as exc:
        raise CLIError(f"UPGRADE FAILED: {exc.reason}; nothing was changed") from None
    except release.ReleaseError as exc:
        raise CLIError(f"UPGRADE FAILED: {exc}") from None
    print_warnings(new.warnings)
    print(f"Release {DAEMONSET} has been upgraded (lab {args.lab!r}, revision {new.revision}).")
    try:
        count = rollout.restart_agents(args.lab, _progress())
    except rollout.RolloutError as exc:
        raise CLIError(f"rollout: {exc}") from None
    if count:
        print(f"daemon set {DAEMONSET} successfully rolled out ({count} agents restarted)")
    else:
        print("configuration unchanged: " + ("no agent restarted" if not changed else "every agent already runs it"))
    return 0


def _values(args: argparse.Namespace) -> int:
    from membrane.lab import release

    try:
        current = release.current(args.lab)
    except release.ReleaseError as exc:
        raise CLIError(str(exc)) from None
    values = current.values
    if args.all:
        from membrane.model.helm_release import computed_values

        values = computed_values(current.config, current.values)
    if args.output == "json":
        print(json.dumps(values, indent=2, sort_keys=True))
        return 0
    text = helm_values.to_yaml(values) if values else "null\n"
    if args.output == "table":
        print("COMPUTED VALUES:" if args.all else "USER-SUPPLIED VALUES:")
    print(text, end="")
    return 0


def _rollout(args: argparse.Namespace) -> int:
    from membrane.lab import release, rollout

    if args.rollout_cmd == "restart":
        try:
            count = rollout.restart_agents(args.lab, _progress(), every=True)
        except (release.ReleaseError, rollout.RolloutError) as exc:
            raise CLIError(f"rollout: {exc}") from None
        print(f"daemon set {DAEMONSET} restarted ({count} agents, one at a time)")
        return 0
    deadline = time.monotonic() + args.timeout
    last = ""
    while True:
        try:
            states = rollout.status(args.lab)
        except (release.ReleaseError, rollout.RolloutError) as exc:
            raise CLIError(str(exc)) from None
        total = len(states)
        updated = sum(s.updated for s in states)
        available = sum(s.updated and s.ready for s in states)
        if available == total:
            print(f"daemon set {DAEMONSET} successfully rolled out")
            return 0
        if updated < total:
            line = (f"Waiting for daemon set {DAEMONSET} rollout to finish: {updated} out of {total} "
                    f"new pods have been updated...")
        else:
            line = (f"Waiting for daemon set {DAEMONSET} rollout to finish: {available} of {total} "
                    f"updated pods are available...")
        if line != last:
            print(line, flush=True)
            last = line
        if args.watch == "false":
            pending = ", ".join(s.node for s in states if not (s.updated and s.ready))
            print(f"not yet updated and ready: {pending}")
            return 1
        if time.monotonic() > deadline:
            raise CLIError(f"timed out waiting for the condition (rollout of {DAEMONSET} after {args.timeout:.0f}s)")
        time.sleep(0.5)
