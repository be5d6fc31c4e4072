"""``membrane status`` and ``membrane endpoint list``: ask the node agents over their sockets."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from membrane.api.unixhttp import APIError, request_json
from membrane.cli.commands import CLIError
from membrane.model.naming import LabPaths


def _nodes(lab: str, only: str | None) -> list[str]:
    from membrane.lab.record import load_record

    record = load_record(lab)
    if record is None:
        raise CLIError(f"lab {lab!r} not found")
    names = [n.name for n in record.topology.nodes]
    if only:
        if only not in names:
            raise CLIError(f"node {only!r} not in lab {lab!r} (nodes: {', '.join(names)})")
        return [only]
    return names


def _ask(lab: str, node: str, path: str) -> Any:
    try:
        return request_json(LabPaths(lab).agent_socket(node), "GET", path, timeout=5)
    except (OSError, APIError) as exc:
        raise CLIError(f"agent on {node} is not reachable: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from membrane.cli.dbg_status import failing_components
    from membrane.cli.printers import render_endpoint_list, render_status

    if args.command in ("status", "dbg"):  # one agent's page: a node is always named
        nodes = _nodes(args.lab, args.node)
        status = _ask(args.lab, nodes[0], "/v1/status")
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
    for node in _nodes(args.lab, args.node):
        try:
            eps = _ask(args.lab, node, "/v1/endpoints")
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

    node = _nodes(args.lab, args.node)[0]
    services = _ask(args.lab, node, "/v1/services")
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
