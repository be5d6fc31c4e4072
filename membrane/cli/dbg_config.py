"""``membrane dbg config [--all]``: an agent's effective configuration, as ``cilium-dbg config`` prints it.

The agent answers ``GET /v1/config`` with the configuration it runs (read when it started); the
option names and values come from the Helm key table (membrane.model.helm_keys). Without ``--all``
only the read-write options are printed, as cilium-dbg does.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from membrane.api.unixhttp import APIError, request_json
from membrane.cli.arguments import CLIError
from membrane.cli.target import agent_socket, pick_nodes
from membrane.model.config import ClusterConfig
from membrane.model.helm_release import effective_options


def add_parser(dsub: Any, lab_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    """``config`` under ``membrane dbg`` (``dsub``: the dbg command's sub-parsers)."""
    q = dsub.add_parser("config", help="the agent's effective configuration (cilium-dbg config)")
    q.set_defaults(handler=run)  # main dispatches to the handler its sub-parser set
    lab_arg(q)
    q.add_argument("-a", "--all", action="store_true", help="read-only and read-write options")
    q.add_argument("-r", "--read-only", action="store_true", help="read-only options only")
    q.add_argument("--node", default=None)
    q.add_argument("-o", "--output", choices=("json",))


def read_write_options(config: dict[str, Any]) -> list[tuple[str, str]]:
    cfg = ClusterConfig.from_dict(config)
    return [("Debug", "Enabled" if cfg.debug else "Disabled"), ("PolicyEnforcement", cfg.policy_enforcement_mode)]


def render(config: dict[str, Any], show_all: bool, read_only: bool = False) -> str:
    """cilium-dbg's layout: read-only options sorted, then the read-write ones, ``%-34s: %v``."""
    lines = []
    if show_all or read_only:
        lines.append("#### Read-only configurations ####")
        lines += [f"{name:<34}: {value}" for name, value in effective_options(config)]
    if not read_only:
        lines.append("##### Read-write configurations #####")
        lines += [f"{name:<34}: {value}" for name, value in read_write_options(config)]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    node = pick_nodes(args.lab, args.node)[0]
    try:
        answer = request_json(agent_socket(args.lab, node), "GET", "/v1/config", timeout=5)
    except (OSError, APIError) as exc:
        raise CLIError(f"agent on {node} is not reachable: {exc}") from None
    config = answer.get("config") or {}
    if args.output == "json":
        print(json.dumps({"read-only": dict(effective_options(config)),
                          "read-write": dict(read_write_options(config))}, indent=2))
    else:
        print(render(config, args.all, args.read_only), end="")
    return 0
