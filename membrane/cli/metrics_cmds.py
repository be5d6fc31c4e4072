"""``membrane metrics list [--node N]``: an agent's Prometheus metrics, listed like ``cilium-dbg metrics list``.

Reads ``/metrics`` from the node agent's metrics socket ``/run/membrane/<lab>/metrics-<node>.sock``
(``--operator`` for the operator's ``metrics-operator.sock``, ``--server`` for any ``host:port``/socket path)
and prints one row per sample: ``Metric  Labels  Value`` (labels sorted ``k=v`` joined by spaces, values
``%f``). Histogram buckets are left out (``_sum`` and ``_count`` are listed), as cilium-dbg does.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from membrane.hubble import exposition


def parse_exposition(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text format → ``[(name, labels, value)]`` (prometheus-client's parser)."""
    return exposition.parse(text)


def metrics_rows(text: str, match: str | None = None) -> list[tuple[str, str, float]]:
    rows = []
    for name, labels, value in parse_exposition(text):
        if name.endswith("_bucket") and "le" in labels:
            continue
        if match and match not in name:
            continue
        rows.append((name, " ".join(f"{k}={v}" for k, v in sorted(labels.items())), value))
    return rows


def render_metrics_list(rows: list[tuple[str, str, float]]) -> str:
    from membrane.cli.tabwriter import tabwrite

    lines = ["Metric\tLabels\tValue"] + [f"{name}\t{labels}\t{value:f}" for name, labels, value in rows]
    return tabwrite("\n".join(lines) + "\n", 5, 3)


def metrics_address(args: argparse.Namespace) -> str:
    if args.server:
        return str(args.server)
    from membrane.cli.arguments import CLIError
    from membrane.cli.target import agent_socket, pick_nodes, target

    if args.operator:
        run_dir = target(args.lab).run_dir
        if not run_dir:
            raise CLIError("the operator's metrics socket is not published in the store: give --server ADDRESS")
        return f"{run_dir}/metrics-operator.sock"
    node = args.node
    if node is None:
        node = pick_nodes(args.lab, None)[0]  # like cilium-dbg: the local agent; --node picks another
    return agent_socket(args.lab, node, "metricsSocket")


def add_parser(subparsers: Any, lab_arg: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    p = subparsers.add_parser("metrics", help="agent metrics (cilium-dbg metrics list)")
    p.set_defaults(handler=run)  # main dispatches to the handler its sub-parser set
    if lab_arg is not None:
        lab_arg(p)
    msub = p.add_subparsers(dest="metrics_cmd", required=True)
    q = msub.add_parser("list", help="list metric names, labels and values")
    if lab_arg is not None:
        lab_arg(q)
    q.add_argument("--node", default=None, help="the node whose agent to ask (default: the first)")
    q.add_argument("--operator", action="store_true", help="the operator's metrics instead of an agent's")
    q.add_argument("--server", default=None, help="host:port or unix socket path of a /metrics endpoint")
    q.add_argument("-p", "--match-pattern", dest="match", default=None, help="only metrics whose name contains this")
    q.add_argument("-o", "--output", choices=("json",))


def run(args: argparse.Namespace) -> int:
    from membrane.cli.arguments import CLIError
    from membrane.metricsserver import fetch_metrics

    address = metrics_address(args)
    try:
        text = fetch_metrics(address)
    except (OSError, ValueError) as exc:
        raise CLIError(f"metrics at {address} are not reachable: {exc}") from None
    if args.output == "json":
        samples = [{"name": n, "labels": labels, "value": v} for n, labels, v in parse_exposition(text)
                   if not (n.endswith("_bucket") and "le" in labels) and (not args.match or args.match in n)]
        print(json.dumps(samples, indent=2))
    else:
        print(render_metrics_list(metrics_rows(text, args.match)).rstrip("\n"))
    return 0
