"""``membrane encrypt status [--node N]``: a node's transparent encryption, as ``cilium-dbg encrypt
status`` prints it (from the agent's ``/v1/encrypt/status``); without ``--node`` every node in turn.

``render_encrypt_status`` is pure (the agent's EncryptionStatus in, text out).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from typing import Any

from membrane.cli.node_cmds import ask_agent
from membrane.cli.target import pick_nodes


def add_parser(sub: Any, lab_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("encrypt", help="transparent encryption (cilium-dbg encrypt status)")
    lab_arg(p)
    p.set_defaults(handler=run)  # main dispatches to the handler its sub-parser set
    esub = p.add_subparsers(dest="encrypt_cmd", required=True)
    q = esub.add_parser("status", help="WireGuard device, public key and peers of a node")
    lab_arg(q)
    q.add_argument("--node", default=None, help="one node (default: every node)")
    q.add_argument("-o", "--output", choices=("json",))


def render_encrypt_status(status: Mapping[str, Any], verbose: bool = False) -> str:
    mode = str(status.get("mode", "Disabled"))
    lines = [f"Encryption: {mode}"]
    wireguard = status.get("wireguard") or {}
    for iface in wireguard.get("interfaces") or []:
        lines.append(f"Interface: {iface.get('name', '')}")
        lines.append(f"\tPublic key: {iface.get('public-key', '')}")
        lines.append(f"\tNumber of peers: {iface.get('peer-count', 0)}")
        if verbose:
            for peer in iface.get("peers") or []:
                lines.append(f"\tPeer: {peer.get('public-key', '')}")
                lines.append(f"\t\tEndpoint: {peer.get('endpoint', '')}")
                lines.append(f"\t\tAllowed IPs: {', '.join(peer.get('allowed-ips') or [])}")
                lines.append(f"\t\tTransfer: {peer.get('transfer-rx', 0)} bytes received, "
                             f"{peer.get('transfer-tx', 0)} bytes sent")
    if mode != "Disabled" and status.get("msg", "").startswith("WireGuard UAPI"):
        lines.append(f"Error: {status['msg']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    nodes = pick_nodes(args.lab, args.node)
    answers = {node: ask_agent(args.lab, node, "/v1/encrypt/status") for node in nodes}
    if args.output == "json":
        print(json.dumps(answers if args.node is None else answers[nodes[0]], indent=2))
        return 0
    for i, node in enumerate(nodes):
        if args.node is None:
            print(("\n" if i else "") + f"Node: {node}")
        print(render_encrypt_status(answers[node], verbose=True))
    return 0
