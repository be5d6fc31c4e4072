"""``membrane status``, ``dbg status``, ``endpoint list`` and ``service list``: ask the node agents over
their sockets (found in the store, membrane.cli.target); ``status`` without ``--node`` is the cluster's
(membrane.cli.cluster_status)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from membrane.api.unixhttp import APIError, request_json
from membrane.cli import dbg_config
from membrane.cli.arguments import CLIError
from membrane.cli.target import agent_socket, pick_nodes


def add_parsers(sub: Any, lab_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("service", help="services as a node's datapath serves them (cilium-dbg service list)")
    lab_arg(p)
    p.set_defaults(handler=run)  # main dispatches to the handler its sub-parser set
    ssub = p.add_subparsers(dest="service_cmd", required=True)
    q = ssub.add_parser("list")
    lab_arg(q)
    q.add_argument("--node", default=None)
    q.add_argument("-o", "--output", choices=("json",))

    p = sub.add_parser("status", help="cluster status (cilium status); --node N: one agent (cilium-dbg status)")
    lab_arg(p)
    p.set_defaults(handler=run_status)  # main dispatches to the handler its sub-parser set
    p.add_argument("--node", default=None, help="show this node's agent page (as: membrane dbg status --node N)")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("-o", "--output", choices=("json",))
    p.add_argument("--wait", action="store_true", help="wait until every daemon and agent is OK")
    p.add_argument("--wait-duration", type=float, default=300, metavar="SECONDS")

    p = sub.add_parser("dbg", help="one agent's internals (cilium-dbg)")
    lab_arg(p)
    dsub = p.add_subparsers(dest="dbg_cmd", required=True)
    q = dsub.add_parser("status", help="the agent's status page (cilium-dbg status)")
    lab_arg(q)
    q.set_defaults(handler=run)  # main dispatches to the handler its sub-parser set
    q.add_argument("--node", required=True)
    q.add_argument("--verbose", action="store_true")
    q.add_argument("-o", "--output", choices=("json",))
    dbg_config.add_parser(dsub, lab_arg)

    p = sub.add_parser("endpoint", help="endpoints of a node (cilium-dbg endpoint list)")
    lab_arg(p)
    p.set_defaults(handler=run)  # main dispatches to the handler its sub-parser set
    esub = p.add_subparsers(dest="endpoint_cmd", required=True)
    q = esub.add_parser("list")
    lab_arg(q)
    q.add_argument("--node", default=None)
    q.add_argument("-o", "--output", choices=("json",))


def ask_agent(lab: str, node: str, path: str) -> Any:
    socket = agent_socket(lab, node)
    try:
        return request_json(socket, "GET", path, timeout=5)
    except (OSError, APIError) as exc:
        raise CLIError(f"agent on {node} is not reachable: {exc}") from None


def run_status(args: argparse.Namespace) -> int:
    """``membrane status``: the cluster's page, or with ``--node N`` that agent's (as ``dbg status``)."""
    if args.node is None:
        from membrane.cli import cluster_status

        return cluster_status.run(args)
    return run(args)


def run(args: argparse.Namespace) -> int:
    from membrane.cli.dbg_status import failing_components
    from membrane.cli.printers import render_endpoint_list, render_status

    if args.command in ("status", "dbg"):  # one agent's page: a node is always named
        nodes = pick_nodes(args.lab, args.node)
        status = ask_agent(args.lab, nodes[0], "/v1/status")
        if args.output == "json":
            print(json.dumps(status, indent=2))
        else:
            print(render_status(status, verbose=args.verbose).rstrip("\n"))
        failing = failing_components(status)
        if failing:
            print(f"error: failing: {', '.join(failing)}", file=sys.stderr)
        return 1 if failing else 0
    if args.command == "service":
        return _services(args)
    rows: list[dict[str, Any]] = []
    for node in pick_nodes(args.lab, args.node):
        try:
            eps = ask_agent(args.lab, node, "/v1/endpoints")
        except CLIError as exc:
            print(f"warning: {exc}", file=sys.stderr)
            continue
        for ep in eps:
            ep["node"] = node
        rows.extend(eps)
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    else:
        print(render_endpoint_list(rows, node_column=args.node is None).rstrip("\n"))
    return 0


def _services(args: argparse.Namespace) -> int:
    """``membrane service list``: ID, frontend, type and backends as the node serves them."""
    from membrane.cli.tabwriter import tabwrite

    node = pick_nodes(args.lab, args.node)[0]
    services = ask_agent(args.lab, node, "/v1/services")
    if args.output == "json":
        print(json.dumps(services, indent=2))
        return 0
    lines = ["ID\tFrontend\tService Type\tBackend"]
    for svc in services:
        backends = svc["backends"] or [""]
        for i, backend in enumerate(backends):
            first = i == 0
            lines.append("\t".join([str(svc["id"]) if first else "", svc["frontend"] if first else "",
                                    svc["type"] if first else "", f"{i + 1} => {backend}" if backend else ""]))
    print(tabwrite("\n".join(lines), 5, 3).rstrip("\n"))
    return 0
