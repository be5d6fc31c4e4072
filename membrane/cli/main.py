"""``membrane``: the command line, kubectl conventions for resources, cilium-dbg for node internals.

Every command takes ``--lab NAME`` (before or after the command) to address one lab, or
``--etcd URL`` (and ``--cluster NAME``) to address any cluster through its store (membrane.cli.target).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from membrane.cli.target import Target
from membrane.model.naming import DEFAULT_LAB


class _Parser(argparse.ArgumentParser):
    """argparse with kubectl's reaction to a bad flag: one ``error:`` line, a pointer to --help, exit 1."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"error: {message}\nSee '{self.prog} --help' for usage.\n")


def _lab_arg(p: argparse.ArgumentParser, top: bool = False) -> None:
    kwargs = {"default": DEFAULT_LAB} if top else {"default": argparse.SUPPRESS}
    p.add_argument("--lab", help="lab to address (default: membrane)", **kwargs)
    none = {"default": None} if top else {"default": argparse.SUPPRESS}
    p.add_argument("--etcd", metavar="URL", help="address the cluster whose store is at URL instead of a lab "
                   "(env: MEMBRANE_ETCD)", **none)
    p.add_argument("--cluster", metavar="NAME", help="cluster name in that store (default: default)", **none)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="membrane", description="eBPF networking for containers, Cilium-style")
    _lab_arg(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("apply", help="create or update resources from files (kubectl apply)")
    _lab_arg(p)
    p.add_argument("-f", "--filename", action="append", required=True, help="file, directory or - for stdin")
    p.add_argument("-n", "--namespace", default=None)

    p = sub.add_parser("delete", help="delete resources by file or by kind and name")
    _lab_arg(p)
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

    p = sub.add_parser("get", help="list resources (kubectl get)")
    _lab_arg(p)
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

    p = sub.add_parser("label", help="add, change or remove labels (kubectl label)")
    _lab_arg(p)
    p.add_argument("kind")
    p.add_argument("name")
    p.add_argument("labels", nargs="+", help="k=v to set, k- to remove")
    p.add_argument("-n", "--namespace", default=None)
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("exec", help="run a command in a pod's network namespace")
    _lab_arg(p)
    p.add_argument("-n", "--namespace", default=None)
    p.add_argument("-c", "--container", default=None)
    p.add_argument("-i", "--stdin", action="store_true", help="accepted for kubectl compatibility")
    p.add_argument("-t", "--tty", action="store_true", help="accepted for kubectl compatibility")
    p.add_argument("pod")
    p.add_argument("cmd", nargs=argparse.REMAINDER)

    p = sub.add_parser("service", help="services as a node's datapath serves them (cilium-dbg service list)")
    _lab_arg(p)
    ssub = p.add_subparsers(dest="service_cmd", required=True)
    q = ssub.add_parser("list")
    _lab_arg(q)
    q.add_argument("--node", default=None)
    q.add_argument("-o", "--output", choices=("json",))

    p = sub.add_parser("status", help="cluster status (cilium status); --node N: one agent (cilium-dbg status)")
    _lab_arg(p)
    p.add_argument("--node", default=None, help="show this node's agent page (as: membrane dbg status --node N)")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("-o", "--output", choices=("json",))
    p.add_argument("--wait", action="store_true", help="wait until every daemon and agent is OK")
    p.add_argument("--wait-duration", type=float, default=300, metavar="SECONDS")

    p = sub.add_parser("dbg", help="one agent's internals (cilium-dbg)")
    _lab_arg(p)
    dsub = p.add_subparsers(dest="dbg_cmd", required=True)
    q = dsub.add_parser("status", help="the agent's status page (cilium-dbg status)")
    _lab_arg(q)
    q.add_argument("--node", required=True)
    q.add_argument("--verbose", action="store_true")
    q.add_argument("-o", "--output", choices=("json",))
    from membrane.cli import dbg_config

    dbg_config.add_parser(dsub, _lab_arg)

    p = sub.add_parser("endpoint", help="endpoints of a node (cilium-dbg endpoint list)")
    _lab_arg(p)
    esub = p.add_subparsers(dest="endpoint_cmd", required=True)
    q = esub.add_parser("list")
    _lab_arg(q)
    q.add_argument("--node", default=None)
    q.add_argument("-o", "--output", choices=("json",))

    from membrane.cli import (
        bgp_cmds,
        bpf_cmds,
        connectivity_cmd,
        describe_cmd,
        encrypt_cmds,
        fqdn_cmds,
        hubble_cmds,
        lab_helm_cmds,
        metrics_cmds,
        observe,
        policy_cmds,
        rollout_cmd,
        workload_cmds,
    )

    bpf_cmds.add_parser(sub, _lab_arg)
    bgp_cmds.add_parser(sub, _lab_arg)
    policy_cmds.add_parser(sub, _lab_arg)
    observe.add_parser(sub, _lab_arg)
    metrics_cmds.add_parser(sub, _lab_arg)
    hubble_cmds.add_parser(sub, _lab_arg)
    connectivity_cmd.add_parser(sub, _lab_arg)
    describe_cmd.add_parser(sub, _lab_arg)
    workload_cmds.add_parsers(sub, _lab_arg)
    rollout_cmd.add_parser(sub, _lab_arg)
    encrypt_cmds.add_parser(sub, _lab_arg)
    fqdn_cmds.add_parser(sub, _lab_arg)

    p = sub.add_parser("identity", help="security identities (cilium-dbg identity list|get)")
    _lab_arg(p)
    isub = p.add_subparsers(dest="identity_cmd", required=True)
    q = isub.add_parser("list")
    _lab_arg(q)
    q.add_argument("-o", "--output", choices=("json",))
    q = isub.add_parser("get")
    _lab_arg(q)
    q.add_argument("id")
    q.add_argument("-o", "--output", choices=("json",))

    p = sub.add_parser("lab", help="a multi-node cluster on this machine")
    _lab_arg(p)
    lsub = p.add_subparsers(dest="lab_cmd", required=True)
    q = lsub.add_parser("create", help="build the lab")
    _lab_arg(q)
    q.add_argument("--nodes", type=int, default=3)
    q.add_argument("--config", default=None, help="lab.yaml with nodes, router and settings")
    q.add_argument("--topology", default=None, choices=("seed-bgp",), help="a named topology instead of --config")
    lab_helm_cmds.add_values_args(q)
    q = lsub.add_parser("delete", help="remove the lab and everything it made")
    _lab_arg(q)
    q = lsub.add_parser("status", help="show the lab's nodes and daemons")
    _lab_arg(q)
    q = lsub.add_parser("list", help="list labs on this machine")
    _lab_arg(q)
    for verb in ("stop", "start", "restart"):
        q = lsub.add_parser(verb, help=f"{verb} one lab daemon (etcd, operator, kubelet, agent-<node>)")
        _lab_arg(q)
        q.add_argument("daemon")
    q = lsub.add_parser("exec", help="run a command in a lab namespace (a node, router, or underlay)")
    _lab_arg(q)
    q.add_argument("target")
    q.add_argument("cmd", nargs=argparse.REMAINDER)
    lab_helm_cmds.add_lab_parsers(lsub, _lab_arg)

    p = sub.add_parser("completion", help="shell completion script: source <(membrane completion bash)")
    _lab_arg(p)
    p.add_argument("shell", choices=("bash", "zsh", "fish"))

    p = sub.add_parser("version", help="print the version")
    _lab_arg(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # the shell is asking for completions (see: membrane completion)
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    from membrane.cli import commands, target
    from membrane.model.errors import ValidationError

    target.register_lab(_lab_target)
    target.configure(args.etcd, args.cluster)
    from membrane.store.errors import StoreError

    try:
        return commands.dispatch(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `membrane ... | head`
        sys.stderr.close()
        return 0
    except (commands.CLIError, ValidationError) as exc:  # user errors: one line, as kubectl prints them
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"error: cluster store: {exc}", file=sys.stderr)
        return 1


def _lab_target(lab: str) -> Target:
    from membrane.cli.lab_cmds import lab_target

    return lab_target(lab)


if __name__ == "__main__":
    sys.exit(main())
