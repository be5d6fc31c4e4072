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
    from membrane.cli import (
        apply_cmds,
        bgp_cmds,
        bpf_cmds,
        client_cmds,
        connectivity_cmd,
        describe_cmd,
        encrypt_cmds,
        exec_cmds,
        fqdn_cmds,
        get_cmds,
        hubble_cmds,
        identity_cmds,
        lab_cmds,
        label_cmds,
        metrics_cmds,
        node_cmds,
        observe,
        policy_cmds,
        rollout_cmd,
        workload_cmds,
    )

    # Each command module registers its sub-parsers with the handler that runs them; the order here is
    # the order of `membrane --help`.
    apply_cmds.add_parsers(sub, _lab_arg)
    get_cmds.add_parser(sub, _lab_arg)
    label_cmds.add_parser(sub, _lab_arg)
    exec_cmds.add_parser(sub, _lab_arg)
    node_cmds.add_parsers(sub, _lab_arg)
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
    identity_cmds.add_parser(sub, _lab_arg)
    lab_cmds.add_parser(sub, _lab_arg)
    client_cmds.add_parsers(sub, _lab_arg)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # the shell is asking for completions (see: membrane completion)
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    from membrane.cli import target
    from membrane.cli.arguments import CLIError
    from membrane.model.errors import ValidationError

    target.register_lab(_lab_target)
    target.configure(args.etcd, args.cluster)
    from membrane.store.errors import StoreError

    try:
        return int(args.handler(args))  # set by the command's module (set_defaults in its add_parser)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `membrane ... | head`
        sys.stderr.close()
        return 0
    except (CLIError, ValidationError) as exc:  # user errors: one line, as kubectl prints them
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
