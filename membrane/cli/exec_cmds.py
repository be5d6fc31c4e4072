"""``membrane exec [-n NS] POD -- COMMAND``: run a command in a pod's network namespace (kubectl exec)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from membrane.cli import target as cli_target
from membrane.cli.arguments import CLIError, check_name, check_namespace
from membrane.model.naming import pod_hostname


def add_parser(sub: Any, lab_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("exec", help="run a command in a pod's network namespace")
    lab_arg(p)
    p.set_defaults(handler=cmd_exec)  # main dispatches to the handler its sub-parser set
    p.add_argument("-n", "--namespace", default=None)
    p.add_argument("-c", "--container", default=None)
    p.add_argument("-i", "--stdin", action="store_true", help="accepted for kubectl compatibility")
    p.add_argument("-t", "--tty", action="store_true", help="accepted for kubectl compatibility")
    p.add_argument("pod")
    p.add_argument("cmd", nargs=argparse.REMAINDER)


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
