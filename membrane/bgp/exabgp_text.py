"""ExaBGP's two languages, written from the desired sessions and routes: its config file and its API lines.

``config(instances, process_cmd)`` is the file a node's speaker starts with: one ``neighbor`` block per
(instance, peer) with the instance's local ASN and router ID and the peer's settings, and one API
``process`` (the bridge the agent talks through). ExaBGP has no per-peer keepalive or connect-retry:
it sends keepalives every hold-time / 3 and retries connecting on its own schedule; ``PeerSession``
still carries Cilium's values so status can report the configured ones.

``commands(old, new)`` is the incremental part: the ``neighbor A withdraw route P`` and ``neighbor A
announce route P next-hop self ...`` lines that turn one advertised set into the next, withdrawals
first. A route whose attributes changed is announced again (BGP replaces it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from membrane.bgp.advertisements import Route
from membrane.bgp.sessions import InstanceSession

PROCESS = "membrane"
FAMILIES = {"ipv4/unicast": "ipv4 unicast", "ipv6/unicast": "ipv6 unicast"}

Advertised = Mapping[str, Mapping[str, Route]]  # peer address -> prefix -> route


def config(instances: Sequence[InstanceSession], process_cmd: Sequence[str], node_ip: str) -> str:
    lines = [f"process {PROCESS} {{", f"    run {' '.join(process_cmd)};", "    encoder json;", "}", ""]
    for inst in instances:
        for peer in inst.peers:
            families = [FAMILIES[f] for f in peer.families if f in FAMILIES] or list(FAMILIES.values())
            lines += [
                f"neighbor {peer.address} {{",
                f'    description "{inst.name}/{peer.name}";',
                f"    router-id {inst.router_id};",
                f"    local-address {peer.local_address or node_ip};",
                f"    local-as {inst.local_asn};",
                f"    peer-as {peer.peer_asn or 'auto'};",
                f"    hold-time {peer.hold_time};",
                f"    connect {peer.peer_port};",
                "    passive false;",
                "    adj-rib-out true;",
                *([f"    outgoing-ttl {peer.ebgp_multihop};"] if peer.ebgp_multihop > 1 else []),
                *([f"    capability {{ graceful-restart {peer.restart_time}; }}"] if peer.graceful_restart else []),
                "    family {", *(f"        {f};" for f in families), "    }",
                f"    api {{ processes [ {PROCESS} ]; neighbor-changes; receive {{ parsed; update; }} }}",
                "}", "",
            ]
    return "\n".join(lines)


def route_attributes(route: Route) -> str:
    """The attribute part of an ``announce route`` line (ExaBGP's syntax)."""
    standard = [c for c in route.communities if c.count(":") < 2]
    large = [c for c in route.communities if c.count(":") == 2]
    out = "next-hop self"
    if route.local_preference is not None:
        out += f" local-preference {route.local_preference}"
    if standard:
        out += f" community [ {' '.join(standard)} ]"
    if large:
        out += f" large-community [ {' '.join(large)} ]"
    return out


def commands(old: Advertised, new: Advertised) -> list[str]:
    """API lines that take the speaker from ``old`` to ``new``: withdrawals first, then announcements."""
    withdraw, announce = [], []
    for peer in sorted(set(old) | set(new)):
        before, after = old.get(peer, {}), new.get(peer, {})
        withdraw += [f"neighbor {peer} withdraw route {p}" for p in sorted(before) if p not in after]
        announce += [f"neighbor {peer} announce route {p} {route_attributes(r)}"
                     for p, r in sorted(after.items()) if before.get(p) != r]
    return withdraw + announce
