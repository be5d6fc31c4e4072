"""``membrane bpf egress list``: a node's egress gateway rows (mb_egress_v4), as ``cilium-dbg bpf
egress list`` prints them: Source IP, Destination CIDR, Egress IP, Gateway IP. A gateway of 0.0.0.0
(no node matches the policy's nodeSelector: packets are dropped with 194) reads ``Not Found``, 0.0.0.1
(an excluded or in-cluster destination) ``Excluded CIDR``. The rows come from the agent's
``/v1/bpf/egress``; rendering is pure so it is tested without a lab.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence

from membrane.cli.node_cmds import ask_agent
from membrane.cli.tabwriter import tabwrite
from membrane.cli.target import pick_nodes

HEADER = ("Source IP", "Destination CIDR", "Egress IP", "Gateway IP")
GATEWAY_TEXT = {"0.0.0.0": "Not Found", "0.0.0.1": "Excluded CIDR"}


def render_egress(rows: Sequence[Mapping[str, str]]) -> str:
    lines = [HEADER, *((r["source"], r["destination"], r["egress"], GATEWAY_TEXT.get(r["gateway"], r["gateway"]))
                       for r in rows)]
    return tabwrite("\n".join("\t".join(line) for line in lines), 5, 3).rstrip("\n")


def run_egress(args: argparse.Namespace) -> int:
    rows = ask_agent(args.lab, pick_nodes(args.lab, args.node)[0], "/v1/bpf/egress")
    print(json.dumps(rows, indent=2) if args.output == "json" else render_egress(rows))
    return 0
