"""``membrane bgp peers`` and ``bgp routes available|advertised ipv4 unicast``, as ``cilium bgp`` prints them.

Every node's agent answers ``/v1/bgp/peers`` and ``/v1/bgp/routes`` (membrane.agent.bgp_speaker);
the CLI asks each node (or ``--node N``) and prints one table, a ``Node`` column first, like the
cilium CLI does across the cluster. Rendering is pure (rows in, text out), tested without a lab.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from membrane.cli.age import go_duration
from membrane.cli.node_cmds import ask_agent
from membrane.cli.tabwriter import tabwrite
from membrane.cli.target import pick_nodes


def add_parser(sub: Any, lab_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("bgp", help="BGP peers and routes of the nodes' speakers (cilium bgp ...)")
    lab_arg(p)
    p.set_defaults(handler=run)  # main dispatches to the handler its sub-parser set
    bsub = p.add_subparsers(dest="bgp_cmd", required=True)
    q = bsub.add_parser("peers", help="each node's BGP sessions (cilium bgp peers)")
    lab_arg(q)
    q.add_argument("--node", default=None)
    q.add_argument("-o", "--output", choices=("json",))
    q = bsub.add_parser("routes", help="routes in the local RIB or sent to peers (cilium bgp routes)")
    lab_arg(q)
    q.add_argument("table", choices=("available", "advertised"))
    q.add_argument("afi", nargs="?", default="ipv4", choices=("ipv4", "ipv6"))
    q.add_argument("safi", nargs="?", default="unicast", choices=("unicast",))
    q.add_argument("--node", default=None)
    q.add_argument("-o", "--output", choices=("json",))


def _table(lines: Sequence[Sequence[str]]) -> str:
    return tabwrite("\n".join("\t".join(r) for r in lines), 5, 3).rstrip("\n")


def _age(since: float, now: float) -> str:
    return go_duration(int(now - since)) if since else "0s"


def render_peers(rows: Sequence[Mapping[str, Any]], now: float) -> str:
    lines = [("Node", "Local AS", "Peer AS", "Peer Address", "Session State", "Uptime", "Family", "Received",
              "Advertised")]
    for r in rows:
        up = _age(float(r.get("since") or 0), now) if r["state"] == "established" else "0s"
        for i, fam in enumerate(r["families"]):
            lines.append((str(r["node"]) if i == 0 else "", str(r["local-asn"]) if i == 0 else "",
                          str(r["peer-asn"]) if i == 0 else "", f"{r['peer-address']}:{r['peer-port']}" if i == 0 else "",
                          r["state"] if i == 0 else "", up if i == 0 else "", fam,
                          str(r["received"]) if fam == "ipv4/unicast" else "0",
                          str(r["advertised"]) if fam == "ipv4/unicast" else "0"))
    return _table(lines)


def _attrs(r: Mapping[str, Any], nexthop: str, as_path: Sequence[int] = ()) -> str:
    parts = ["{Origin: i}"]
    if as_path:
        parts.append("{AsPath: " + " ".join(str(a) for a in as_path) + "}")
    parts.append("{Nexthop: " + nexthop + "}")
    if r.get("local-preference") is not None:
        parts.append(f"{{LocalPref: {r['local-preference']}}}")
    if r.get("communities"):
        parts.append("{Communities: " + ", ".join(r["communities"]) + "}")
    return "[" + " ".join(parts) + "]"


def render_routes(table: str, rows: Sequence[Mapping[str, Any]], now: float) -> str:
    if table == "available":
        lines = [("Node", "VRouter", "Prefix", "NextHop", "Age", "Attrs")]
        lines += [(str(r["node"]), str(r["asn"]), r["prefix"], r["nexthop"], _age(float(r["age"]), now),
                   _attrs(r, r["nexthop"])) for r in rows]
    else:
        lines = [("Node", "VRouter", "Peer", "Prefix", "NextHop", "Age", "Attrs")]
        lines += [(str(r["node"]), str(r["asn"]), r["peer"], r["prefix"], r["nexthop"], _age(float(r["age"]), now),
                   _attrs(r, r["nexthop"], r.get("as-path") or ())) for r in rows]
    return _table(lines)


def _family(prefix: str, afi: str) -> bool:
    return (":" in prefix) == (afi == "ipv6")


def run(args: argparse.Namespace) -> int:
    now = time.time()
    if args.bgp_cmd == "peers":
        rows = [{"node": n, **r} for n in pick_nodes(args.lab, args.node) for r in ask_agent(args.lab, n, "/v1/bgp/peers")]
        print(json.dumps(rows, indent=2) if args.output == "json" else render_peers(rows, now))
        return 0
    rows = []
    for n in pick_nodes(args.lab, args.node):
        data = ask_agent(args.lab, n, "/v1/bgp/routes") or {}
        rows += [{"node": n, **r} for r in data.get(args.table) or [] if _family(r["prefix"], args.afi)]
    print(json.dumps(rows, indent=2) if args.output == "json" else render_routes(args.table, rows, now))
    return 0
