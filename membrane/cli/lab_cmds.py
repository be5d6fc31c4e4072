"""``membrane lab create|delete|status|list|exec``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from membrane.cli import lab_helm_cmds
from membrane.cli.arguments import CLIError
from membrane.cli.target import Target, agent_socket
from membrane.lab.paths import LabPaths
from membrane.model.errors import ValidationError
from membrane.model.naming import NETNS_DIR, validate_lab_name


class _Progress:
    """One line per step with the elapsed time, so a slow step is visible while it runs."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.start:5.1f}s] {message}", flush=True)


def lab_target(lab: str) -> Target:
    """How ``--lab NAME`` is addressed: the lab's etcd and cluster, its sockets as fallbacks."""
    from membrane.lab.daemons import MAX_TXN_OPS
    from membrane.lab.record import load_record

    record = load_record(lab)
    if record is None:
        raise CLIError(f"lab {lab!r} not found (create it with: membrane lab create --lab {lab})")
    paths = LabPaths(lab)
    return Target(paths.etcd_endpoint, record.topology.config.cluster_name, where=f"lab {lab!r}",
                  max_txn_ops=MAX_TXN_OPS, run_dir=paths.run_dir, nodes=tuple(n.name for n in record.topology.nodes))


def add_parser(sub: Any, lab_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("lab", help="a multi-node cluster on this machine")
    lab_arg(p)
    p.set_defaults(handler=run)  # main dispatches to the handler its sub-parser set
    lsub = p.add_subparsers(dest="lab_cmd", required=True)
    q = lsub.add_parser("create", help="build the lab")
    lab_arg(q)
    q.add_argument("--nodes", type=int, default=3)
    q.add_argument("--config", default=None, help="lab.yaml with nodes, router and settings")
    q.add_argument("--topology", default=None, choices=("seed-bgp",), help="a named topology instead of --config")
    lab_helm_cmds.add_values_args(q)
    q = lsub.add_parser("delete", help="remove the lab and everything it made")
    lab_arg(q)
    q = lsub.add_parser("status", help="show the lab's nodes and daemons")
    lab_arg(q)
    q = lsub.add_parser("list", help="list labs on this machine")
    lab_arg(q)
    for verb in ("stop", "start", "restart"):
        q = lsub.add_parser(verb, help=f"{verb} one lab daemon (etcd, operator, kubelet, agent-<node>)")
        lab_arg(q)
        q.add_argument("daemon")
    q = lsub.add_parser("exec", help="run a command in a lab namespace (a node, router, or underlay)")
    lab_arg(q)
    q.add_argument("target")
    q.add_argument("cmd", nargs=argparse.REMAINDER)
    lab_helm_cmds.add_lab_parsers(lsub, lab_arg)


def run(args: argparse.Namespace) -> int:
    try:
        validate_lab_name(args.lab)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if args.lab_cmd in ("upgrade", "values", "rollout"):
        return lab_helm_cmds.run(args)
    handlers = {"create": _create, "delete": _delete, "status": _status, "list": _list, "exec": _exec,
                "stop": _daemon, "start": _daemon, "restart": _daemon}
    return handlers[args.lab_cmd](args)


def _daemon(args: argparse.Namespace) -> int:
    from membrane.lab import daemons

    try:
        if args.lab_cmd in ("stop", "restart"):
            daemons.stop_daemon(args.lab, args.daemon)
            print(f"{args.daemon} stopped")
        if args.lab_cmd in ("start", "restart"):
            rec = daemons.start_daemon(args.lab, args.daemon)
            print(f"{args.daemon} started (pid {rec.pid})")
    except daemons.LabError as exc:
        raise CLIError(str(exc)) from None
    return 0


def _create(args: argparse.Namespace) -> int:
    from membrane.cli.lab_helm_cmds import helm_word_warnings, print_warnings, read_values
    from membrane.lab import builder
    from membrane.lab.topology import build_topology
    from membrane.model.helm_values import combine

    files, sets = read_values(args)
    print_warnings(helm_word_warnings(args))
    text = None
    if args.topology:  # a named preset (membrane.lab.presets), read as if it were --config
        from membrane.lab.presets import PRESETS

        if args.config:
            raise CLIError("--topology and --config: give one of them")
        text, args.config = PRESETS[args.topology], f"--topology {args.topology}"
    if args.config and text is None:
        try:
            with open(args.config) as fh:
                text = fh.read()
        except OSError as exc:
            raise CLIError(f"{args.config}: {exc.strerror}") from None
    try:
        topo = build_topology(args.nodes, text, args.config or "lab.yaml", values=combine(files, sets))
    except ValidationError as exc:
        raise CLIError(str(exc)) from None
    print_warnings(topo.warnings)
    progress = _Progress()
    progress(f"creating lab {args.lab!r}: {len(topo.nodes)} nodes, ipam {topo.config.ipam_mode}, "
             f"routing {topo.config.routing_mode}")
    try:
        builder.create(args.lab, topo, progress)
    except builder.LabError as exc:
        raise CLIError(f"{exc} (nothing was left behind)") from None
    progress("lab ready")
    _print_nodes(args.lab)
    print(f"\nTry: membrane --lab {args.lab} get nodes -o wide   |   membrane --lab {args.lab} lab delete")
    return 0


def _delete(args: argparse.Namespace) -> int:
    from membrane.lab import builder

    if os.geteuid() != 0:
        raise CLIError("lab delete needs root")
    removed = builder.delete(args.lab, _Progress())
    if not removed:
        print(f"lab {args.lab!r}: nothing to remove")
    else:
        print(f"lab {args.lab!r} deleted ({len(removed)} items removed)")
    return 0


def _print_nodes(lab: str) -> None:
    from membrane.lab.record import load_record

    record = load_record(lab)
    if record is None:
        return
    print(f"{'NODE':<12} {'NETNS':<24} {'IP':<18}")
    for node in record.topology.nodes:
        print(f"{node.name:<12} {LabPaths(lab).node_netns(node.name):<24} {node.ip:<18}")


def _status(args: argparse.Namespace) -> int:
    from membrane.cli.age import format_age
    from membrane.lab import daemons
    from membrane.lab.builder import lab_netns
    from membrane.lab.record import load_record

    record = load_record(args.lab)
    if record is None:
        leftovers = lab_netns(args.lab)
        if leftovers:
            print(f"lab {args.lab!r}: no record, but {len(leftovers)} namespaces remain; run: membrane lab delete --lab {args.lab}")
            return 1
        raise CLIError(f"lab {args.lab!r} not found")
    print(f"Lab:        {record.name} ({record.state})")
    print(f"Run dir:    {LabPaths(args.lab).run_dir}")
    print(f"Settings:   ipam.mode={record.topology.config.ipam_mode} routingMode={record.topology.config.routing_mode}")
    print()
    _print_nodes(args.lab)
    print()
    print(f"{'DAEMON':<20} {'PID':>8}   {'STATE':<26} {'RESTARTS':>8}   LAST EXIT")
    bad = 0
    for name, rec in sorted(record.processes.items()):
        state = daemons.daemon_state(args.lab, name)
        text, ok = daemon_health(args.lab, name, rec, state)
        bad += not ok
        last = ""
        if state is not None and state.last_exit:
            last = f"{state.last_exit} ({format_age(time.time() - state.last_exit_time)} ago)"
        pid = state.pid if state is not None and state.pid else rec.pid
        print(f"{name:<20} {pid:>8}   {text:<26} {state.restarts if state else 0:>8}   {last}".rstrip())
    pods = [n for n in lab_netns(args.lab) if ".pod-" in n]
    print(f"\nPod sandboxes: {len(pods)}")
    return 1 if bad else 0


def daemon_health(lab: str, name: str, supervisor: Any, state: Any) -> tuple[str, bool]:
    """What ``lab status`` says of one daemon, and whether that is healthy: the supervisor and the
    daemon must be alive, the daemon not stopped (SIGSTOP), and an agent must answer its health check."""
    from membrane.api.unixhttp import APIError, request_json
    from membrane.lab import processes

    if not processes.is_alive(supervisor):
        stopped = state is not None and state.state == "stopped"
        return ("STOPPED (lab stop)" if stopped else "NOT RUNNING (no supervisor)"), False
    if state is None or state.state == "starting":
        return "starting", False
    if state.state == "backoff":
        return "restarting (backoff)", False
    child = state.record
    letter = processes.proc_state(child) if child is not None else ""
    if not letter or letter == "Z":
        return "NOT RUNNING", False
    if letter in ("T", "t"):
        return "STOPPED (SIGSTOP)", False
    if name.startswith("agent-"):
        try:
            health = request_json(agent_socket(lab, name.removeprefix("agent-")), "GET", "/healthz", timeout=2)
        except (OSError, APIError):
            return "UNRESPONSIVE", False
        if not health.get("ok"):
            return f"not ready: {health.get('reason', '')}"[:26], False
    return "running", True


def _list(args: argparse.Namespace) -> int:
    from membrane.lab.record import list_labs, load_record

    labs = list_labs()
    if not labs:
        print("No labs.", file=sys.stderr)
        return 0
    print(f"{'NAME':<20} {'STATE':<10} {'NODES':>5}")
    for name in labs:
        rec = load_record(name)
        print(f"{name:<20} {(rec.state if rec else 'broken'):<10} {(len(rec.topology.nodes) if rec else 0):>5}")
    return 0


def _exec(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        raise CLIError("usage: membrane lab exec NODE -- COMMAND [ARGS...]")
    netns = f"{LabPaths(args.lab).netns_prefix}{args.target}"
    if not os.path.exists(f"{NETNS_DIR}/{netns}"):
        raise CLIError(f"no namespace {args.target!r} in lab {args.lab!r}")
    from membrane.lab.frr import vtysh_argv

    os.execvp("ip", ["ip", "netns", "exec", netns, *vtysh_argv(args.lab, cmd)])
    return 0


# ---- what other commands need of a lab: they call these and never import membrane.lab ----------------
def lab_exists(lab: str) -> bool:
    from membrane.lab.record import load_record

    return load_record(lab) is not None


def lab_daemons(lab: str) -> list[tuple[str, str, bool]]:
    """(daemon, state text, healthy) for every daemon of the lab, agents last (``membrane status``)."""
    from membrane.lab import daemons
    from membrane.lab.record import load_record

    record = load_record(lab)
    if record is None:
        raise CLIError(f"lab {lab!r} not found (create it with: membrane lab create --lab {lab})")
    out = []
    for name, rec in sorted(record.processes.items(), key=lambda kv: (kv[0].startswith("agent-"), kv[0])):
        text, ok = daemon_health(lab, name, rec, daemons.daemon_state(lab, name))
        out.append((name, text, ok))
    return out


def pod_sandbox_pids(lab: str, namespace: str | None = None) -> dict[tuple[str, str], int]:
    """(namespace, pod) -> PID of its running sandbox (the pause process) in the lab's container runtime."""
    from membrane.lab.runtime import Runtime

    return {(sb.namespace, sb.name): sb.pause.pid for sb in Runtime(lab).load_all()
            if sb.pause is not None and namespace in (None, sb.namespace)}


def pod_log_path(lab: str, namespace: str, pod: str, container: str) -> str:
    return LabPaths(lab).pod_log(namespace, pod, container)


def place_netns(lab: str, where: str, name: str) -> str:
    """The network namespace of a lab node (``where == "node"``) or of the world outside it."""
    paths = LabPaths(lab)
    return paths.node_netns(name) if where == "node" else f"{paths.netns_prefix}world"
