"""``membrane status`` and ``membrane endpoint list``: ask the node agents over their sockets (found in
the store, membrane.cli.target)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from membrane.api.unixhttp import APIError, request_json
from membrane.cli.commands import CLIError
from membrane.cli.target import agent_socket, pick_nodes


def ask_agent(lab: str, node: str, path: str) -> Any:
    socket = agent_socket(lab, node)
    try:
        return request_json(socket, "GET", path, timeout=5)
    except (OSError, APIError) as exc:
        raise CLIError(f"agent on {node} is not reachable: {exc}") from None


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
