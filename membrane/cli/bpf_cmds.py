"""``membrane bpf ipcache list | policy get | ct list | ipmasq list | tunnel list``: a node's BPF maps as cilium-dbg prints them.

Everything comes from the node agents' API (``/v1/bpf/ipcache``, ``/v1/bpf/policy``, ``/v1/bpf/ct``);
the CLI never opens a map itself. A command addresses one node: ``--node N``, else the first node of
the lab (cilium-dbg talks to the local agent); ``bpf policy get --all`` without ``--node`` shows every
node and ``bpf policy get ENDPOINT_ID`` finds the node that has that endpoint.

The rendering functions are pure (rows in, text out) so they are tested without a lab.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from membrane.cli.arguments import CLIError
from membrane.cli.egress_cmds import run_egress
from membrane.cli.node_cmds import ask_agent
from membrane.cli.tabwriter import tabwrite
from membrane.cli.target import pick_nodes

POLICY_HEADER = ("POLICY", "DIRECTION", "LABELS (source:key[=value])", "PORT/PROTO", "PROXY PORT", "AUTH TYPE",
                 "BYTES", "PACKETS", "PREFIX")
EMPTY_POLICY = "Policy stats empty. Perhaps the policy enforcement is disabled?"
PROTOCOL_NAMES = {0: "ANY", 1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP"}
# cilium's policy map key: identity (32 bits) + direction (8) are always matched, then protocol (8) and port (16).
STATIC_PREFIX_BITS, PROTOCOL_BITS = 40, 8

LabelsOf = Callable[[int], Sequence[str]]


def add_parser(sub: Any, lab_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``bpf`` command and its maps (called from membrane.cli.main)."""
    p = sub.add_parser("bpf", help="the node's BPF maps (cilium-dbg bpf ...)")
    p.set_defaults(handler=run)  # main dispatches to the handler its sub-parser set
    lab_arg(p)
    bsub = p.add_subparsers(dest="bpf_map", required=True)
    q = bsub.add_parser("ipcache", help="IP/prefix -> identity")
    lab_arg(q)
    q.add_argument("bpf_cmd", choices=("list",))
    q.add_argument("--node", default=None)
    q.add_argument("-o", "--output", choices=("json",))
    q = bsub.add_parser("policy", help="per-endpoint policy entries (cilium-dbg bpf policy get)")
    lab_arg(q)
    q.add_argument("bpf_cmd", choices=("get",))
    q.add_argument("endpoint", nargs="?", help="endpoint id (see: membrane endpoint list)")
    q.add_argument("--all", action="store_true", help="every endpoint")
    q.add_argument("--node", default=None)
    q.add_argument("-o", "--output", choices=("json",))
    q = bsub.add_parser("ct", help="connection tracking entries (cilium-dbg bpf ct list | flush)")
    lab_arg(q)
    q.add_argument("bpf_cmd", choices=("list", "flush"))
    q.add_argument("scope", nargs="?", choices=("global",), help="accepted for cilium-dbg compatibility")
    q.add_argument("--node", default=None)
    q = bsub.add_parser("nat", help="masquerade and NodePort SNAT entries (cilium-dbg bpf nat list)")
    lab_arg(q)
    q.add_argument("bpf_cmd", choices=("list",))
    q.add_argument("--node", default=None)
    q = bsub.add_parser("ipmasq", help="ip-masq-agent's non-masquerade CIDRs (cilium-dbg bpf ipmasq list)")
    lab_arg(q)
    q.add_argument("bpf_cmd", choices=("list",))
    q.add_argument("--node", default=None)
    q.add_argument("-o", "--output", choices=("json",))
    q = bsub.add_parser("tunnel", help="remote pod CIDRs and their nodes (cilium-dbg bpf tunnel list)")
    lab_arg(q)
    q.add_argument("bpf_cmd", choices=("list",))
    q.add_argument("--node", default=None)
    q.add_argument("-o", "--output", choices=("json",))
    q = bsub.add_parser("egress", help="egress gateway policy rows (cilium-dbg bpf egress list)")
    lab_arg(q)
    q.add_argument("bpf_cmd", choices=("list",))
    q.add_argument("--node", default=None)
    q.add_argument("-o", "--output", choices=("json",))
    q = bsub.add_parser("lb", help="service load-balancing maps (cilium-dbg bpf lb list)")
    lab_arg(q)
    q.add_argument("bpf_cmd", choices=("list",))
    q.add_argument("--revnat", action="store_true", help="the reverse-NAT table")
    q.add_argument("--node", default=None)
    q.add_argument("-o", "--output", choices=("json",))
    q = bsub.add_parser("l2", help="addresses this node answers ARP for (cilium-dbg bpf l2 list)")
    lab_arg(q)
    q.add_argument("bpf_cmd", choices=("list",))
    q.add_argument("--node", default=None, help="one node (default: every node, with a NODE column)")
    q.add_argument("-o", "--output", choices=("json",))


def run(args: argparse.Namespace) -> int:
    if args.bpf_map == "ipcache":
        return _ipcache(args)
    if args.bpf_map == "ct":
        return _ct(args)
    if args.bpf_map == "lb":
        return _lb(args)
    if args.bpf_map == "l2":
        return _l2(args)
    if args.bpf_map == "ipmasq":
        return _ipmasq(args)
    if args.bpf_map == "tunnel":
        return _tunnel(args)
    if args.bpf_map == "egress":
        return run_egress(args)
    if args.bpf_map == "nat":
        rows = ask_agent(args.lab, pick_nodes(args.lab, args.node)[0], "/v1/bpf/nat")
        print("\n".join(r["text"] for r in rows))
        return 0
    return _policy(args)


def _lb(args: argparse.Namespace) -> int:
    node = pick_nodes(args.lab, args.node)[0]
    data = ask_agent(args.lab, node, "/v1/bpf/lb")
    rows = data["revnat"] if args.revnat else data["services"]
    if args.output == "json":
        print(json.dumps(rows, indent=2))
        return 0
    header = ("ID", "BACKEND ADDRESS") if args.revnat else ("SERVICE ADDRESS", "BACKEND ADDRESS (REVNAT_ID) (SLOT)")
    print(tabwrite("\n".join("\t".join(r) for r in [header, *rows]), 5, 3).rstrip("\n"))
    return 0


def render_l2(rows: Sequence[Mapping[str, Any]], with_node: bool) -> str:
    """cilium-dbg bpf l2 list: IP, interface, responses sent (and, across nodes, the node)."""
    header = ("NODE",) if with_node else ()
    lines = [(*header, "IP", "INTERFACE", "RESPONSES SENT", "SERVICE")]
    lines += [((str(r["node"]),) if with_node else ()) + (str(r["ip"]), str(r["interface"]), str(r["responses"]),
                                                         str(r.get("service") or ""))
              for r in rows]
    return tabwrite("\n".join("\t".join(r) for r in lines), 5, 3).rstrip("\n")


def _l2(args: argparse.Namespace) -> int:
    rows = []
    for node in pick_nodes(args.lab, args.node):
        rows += [{"node": node, **r} for r in ask_agent(args.lab, node, "/v1/bpf/l2")]
    if args.output == "json":
        print(json.dumps(rows, indent=2))
        return 0
    print(render_l2(rows, with_node=args.node is None))
    return 0


# ---- ipcache -----------------------------------------------------------------------------------------
def _ipcache(args: argparse.Namespace) -> int:
    node = pick_nodes(args.lab, args.node)[0]
    rows = ask_agent(args.lab, node, "/v1/bpf/ipcache")
    if args.output == "json":
        print(json.dumps([{"prefix": p, "value": v} for p, v in rows], indent=2))
        return 0
    text = "\n".join("\t".join(r) for r in [("IP PREFIX/ADDRESS", "IDENTITY"), *rows])
    print(tabwrite(text, 5, 3).rstrip("\n"))
    return 0


# ---- ipmasq ------------------------------------------------------------------------------------------
def render_ipmasq(prefixes: Sequence[str]) -> str:
    """``cilium-dbg bpf ipmasq list``: one column, IP PREFIX/ADDRESS."""
    return tabwrite("\n".join(["IP PREFIX/ADDRESS", *prefixes]), 5, 3).rstrip("\n")


def _ipmasq(args: argparse.Namespace) -> int:
    prefixes = ask_agent(args.lab, pick_nodes(args.lab, args.node)[0], "/v1/bpf/ipmasq")
    print(json.dumps(prefixes, indent=2) if args.output == "json" else render_ipmasq(prefixes))
    return 0


# ---- tunnel ------------------------------------------------------------------------------------------
def render_tunnel(rows: Sequence[Sequence[str]]) -> str:
    """``cilium-dbg bpf tunnel list``: TUNNEL (pod CIDR address) and VALUE (node IP)."""
    return tabwrite("\n".join("\t".join(r) for r in [("TUNNEL", "VALUE"), *rows]), 5, 3).rstrip("\n")


def _tunnel(args: argparse.Namespace) -> int:
    rows = ask_agent(args.lab, pick_nodes(args.lab, args.node)[0], "/v1/bpf/tunnel")
    print(json.dumps(rows, indent=2) if args.output == "json" else render_tunnel(rows))
    return 0


# ---- ct ----------------------------------------------------------------------------------------------
def render_ct(rows: Sequence[Mapping[str, Any]]) -> str:
    """The agent's conntrack lines, one per entry, as cilium-dbg bpf ct list prints them."""
    return "\n".join(str(r.get("text", "")) for r in rows)


def _ct(args: argparse.Namespace) -> int:
    node = pick_nodes(args.lab, args.node)[0]
    if args.bpf_cmd == "flush":
        from membrane.api.unixhttp import APIError, request_json
        from membrane.cli.target import agent_socket

        try:
            flushed = request_json(agent_socket(args.lab, node), "POST", "/v1/bpf/ct/flush", {}, timeout=10)
        except (OSError, APIError) as exc:
            raise CLIError(f"agent on {node} is not reachable: {exc}") from None
        print(f"Flushed {flushed['flushed']} entries from mb_ct on {node}")
        return 0
    text = render_ct(ask_agent(args.lab, node, "/v1/bpf/ct"))
    if text:
        print(text)
    return 0


# ---- policy ------------------------------------------------------------------------------------------
def port_proto(protocol: int, port: int, port_prefix: int) -> str:
    """cilium's PortProtoString: ``ANY``, ``TCP`` (any port), ``80/TCP``, ``8080-8083/TCP``."""
    name = PROTOCOL_NAMES.get(protocol, str(protocol))
    if protocol == 0 or (port == 0 and port_prefix == 0):
        return name
    if port_prefix >= 16:
        return f"{port}/{name}"
    end = port + (0xFFFF >> port_prefix)
    return f"{port}-{end}/{name}"


def key_prefix(protocol: int, port_prefix: int) -> int:
    """The policy map key's LPM prefix length, as cilium-dbg's PREFIX column shows it."""
    if protocol == 0:
        return STATIC_PREFIX_BITS
    return STATIC_PREFIX_BITS + PROTOCOL_BITS + max(0, min(16, port_prefix))


def _entry_order(row: Mapping[str, Any]) -> tuple[int, int, int, int, int]:
    return (0 if row.get("direction") == "ingress" else 1, 0 if row.get("verdict") == "allow" else 1,
            int(row.get("identity", 0)), int(row.get("protocol", 0)), int(row.get("port", 0)))


def render_policy_entries(rows: Sequence[Mapping[str, Any]], labels_of: LabelsOf) -> str:
    """One endpoint's policy map as a table; an identity with several labels takes one line per label."""
    if not rows:
        return EMPTY_POLICY
    lines = ["\t".join(POLICY_HEADER)]
    for row in sorted(rows, key=_entry_order):
        identity = int(row.get("identity", 0))
        labels = list(labels_of(identity)) or [str(identity)]
        protocol, port, prefix = int(row.get("protocol", 0)), int(row.get("port", 0)), int(row.get("port_prefix", 0))
        lines.append("\t".join((
            str(row.get("verdict", "")).capitalize(), str(row.get("direction", "")).capitalize(), labels[0],
            port_proto(protocol, port, prefix), str(row.get("proxy_port") or "NONE"), "disabled", str(row.get("bytes", 0)),
            str(row.get("packets", 0)), str(key_prefix(protocol, prefix)),
        )))
        lines.extend("\t\t" + extra + "\t\t\t\t\t\t" for extra in labels[1:])
    return "\n".join(line.rstrip() for line in tabwrite("\n".join(lines), 5, 3).rstrip("\n").split("\n"))


def endpoint_title(node: str, endpoint: Mapping[str, Any]) -> str:
    name = f"{endpoint.get('namespace') or 'default'}/{endpoint['pod_name']}" if endpoint.get("pod_name") else ""
    ident = (endpoint.get("status") or {}).get("identity") or {}
    parts = [f"Endpoint {endpoint.get('id')}", f"node {node}"]
    if name:
        parts.append(name)
    if ident.get("id") is not None:
        parts.append(f"identity {ident['id']}")
    return ", ".join(parts) + ":"


def render_policy_sections(sections: Sequence[tuple[str, Mapping[str, Any], Sequence[Mapping[str, Any]]]],
                           labels_of: LabelsOf) -> str:
    """``--all``: a title line per endpoint (node, pod, identity) and its table, separated by blank lines."""
    blocks = [f"{endpoint_title(node, ep)}\n{render_policy_entries(rows, labels_of)}" for node, ep, rows in sections]
    return "\n\n".join(blocks)


def identity_labels_lookup(lab: str) -> LabelsOf:
    """Identity -> label strings from the reserved table and the store's allocator (numbers if unreachable)."""
    from membrane.identity.labels import LabelSet
    from membrane.identity.reserved import reserved_identities

    known: dict[int, LabelSet] = dict(reserved_identities())
    try:
        from membrane.cli.target import cluster_store
        from membrane.identity.allocator import IdentityAllocator
        from membrane.store.txn import StoreTxnOps

        store = cluster_store(lab)
        known.update(IdentityAllocator(store.client, StoreTxnOps(), store.layout.identities_prefix).list())
    except Exception as exc:  # the datapath view stays useful without the store
        print(f"warning: identity labels unavailable ({exc}); showing numbers", file=sys.stderr)

    def labels_of(identity: int) -> list[str]:
        if identity == 0:
            return ["reserved:unknown"]
        found = known.get(identity)
        return found.strings() if found is not None else []

    return labels_of


def _policy(args: argparse.Namespace) -> int:
    if args.all == (args.endpoint is not None):
        raise CLIError("usage: membrane bpf policy get --all | ENDPOINT_ID [--node N]")
    wanted: int | None = None
    if args.endpoint is not None:
        try:
            wanted = int(args.endpoint)
        except ValueError:
            raise CLIError(f"endpoint {args.endpoint!r}: expected a number") from None
    sections = []
    holders = []
    for node in pick_nodes(args.lab, args.node):
        try:
            endpoints = ask_agent(args.lab, node, "/v1/endpoints")
        except CLIError as exc:
            if args.node is not None:
                raise
            print(f"warning: {exc}", file=sys.stderr)
            continue
        by_id = {int(ep.get("id", 0)): ep for ep in endpoints}
        ids = sorted(by_id) if wanted is None else [wanted] if wanted in by_id else []
        if not ids:
            continue
        rows = ask_agent(args.lab, node, "/v1/bpf/policy")
        for ep_id in ids:
            sections.append((node, by_id[ep_id], [r for r in rows if int(r.get("endpoint", -1)) == ep_id]))
        holders.append(node)
    if wanted is not None:
        if not holders:
            raise CLIError(f"endpoint {wanted} not found" + (f" on node {args.node}" if args.node else ""))
        if len(holders) > 1:
            raise CLIError(f"endpoint {wanted} exists on nodes {', '.join(holders)}: pass --node")
    if args.output == "json":
        print(json.dumps([dict(r, node=node) for node, _ep, rows in sections for r in rows], indent=2))
        return 0
    labels_of = identity_labels_lookup(args.lab)
    if wanted is not None:
        print(render_policy_entries(sections[0][2], labels_of))
    elif sections:
        print(render_policy_sections(sections, labels_of))
    else:
        print("No endpoints found.", file=sys.stderr)
    return 0
