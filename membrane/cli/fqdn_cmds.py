"""``membrane fqdn cache list``: what the DNS proxy learned on a node (cilium-dbg fqdn cache list)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from membrane.cli.node_cmds import ask_agent
from membrane.cli.tabwriter import tabwrite
from membrane.cli.target import pick_nodes
from membrane.model.fqdn import key_matches, selector_key


def add_parser(sub: Any, lab_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("fqdn", help="DNS names the DNS proxy learned (cilium-dbg fqdn cache list)")
    lab_arg(p)
    p.set_defaults(handler=run)  # main dispatches to the handler its sub-parser set
    fsub = p.add_subparsers(dest="fqdn_cmd", required=True)
    q = fsub.add_parser("cache", help="the DNS cache of a node")
    lab_arg(q)
    q.add_argument("cache_cmd", choices=("list", "clean"), help="list, or clean (forget every name learned)")
    q.add_argument("--node", default=None, help="the node whose agent to ask (list: default the first; "
                   "clean: default every node)")
    q.add_argument("-e", "--endpoint", type=int, default=None, help="only this endpoint's lookups")
    q.add_argument("-p", "--matchpattern", default="", help="only names this matchPattern selects")
    q.add_argument("-s", "--source", choices=("lookup", "connection"), default=None)
    q.add_argument("-o", "--output", choices=("json",))


def _rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}Z"


def render_cache(rows: Sequence[Mapping[str, Any]]) -> str:
    """Cilium's columns: Endpoint, Source, FQDN, TTL, ExpirationTime, IPs."""
    lines = [("Endpoint", "Source", "FQDN", "TTL", "ExpirationTime", "IPs")]
    for r in rows:
        lines.append((str(r["endpoint"]), str(r["source"]), str(r["fqdn"]), str(r["ttl"]),
                      _rfc3339(float(r["expiration"])), ",".join(r["ips"])))
    return tabwrite("\n".join("\t".join(line) for line in lines), 5, 3).rstrip("\n")


def select(rows: Sequence[Mapping[str, Any]], endpoint: int | None, pattern: str, source: str | None) -> list:
    key = selector_key({"matchPattern": pattern}) if pattern else ""
    return [r for r in rows if (endpoint is None or r["endpoint"] == endpoint)
            and (not key or key_matches(key, str(r["fqdn"]))) and (source is None or r["source"] == source)]


def _clean(args: argparse.Namespace) -> int:
    from membrane.api.unixhttp import APIError, request_json
    from membrane.cli.arguments import CLIError
    from membrane.cli.target import agent_socket

    for node in pick_nodes(args.lab, args.node):
        try:
            done = request_json(agent_socket(args.lab, node), "POST", "/v1/fqdn/cache/clean", {}, timeout=10)
        except (OSError, APIError) as exc:
            raise CLIError(f"agent on {node} is not reachable: {exc}") from None
        print(f"Cleaned {done['cleaned']} entries from the DNS cache of {node}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.cache_cmd == "clean":
        return _clean(args)
    node = pick_nodes(args.lab, args.node)[0]
    rows = select(ask_agent(args.lab, node, "/v1/fqdn/cache"), args.endpoint, args.matchpattern, args.source)
    print(json.dumps(rows, indent=2) if args.output == "json" else render_cache(rows))
    return 0
