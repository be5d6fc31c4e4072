"""Transparent encryption with WireGuard, computed from the cluster's nodes (pure).

Each node runs one WireGuard device (``cilium_wg0``, UDP 51871) and publishes its public key on its
Node object (``network.cilium.io/wg-pub-key``, Cilium's annotation). Every other node is a peer:
endpoint = its InternalIP:51871, allowed-ips = its pod CIDRs plus its node addresses (InternalIP and
router IP, the sources of host-originated traffic), as Cilium sets them for pod traffic. The agent
turns these into the device's peer table and the routes that steer other nodes' pod CIDRs into the
device; a node whose key is not known yet still gets its route (fail closed: WireGuard drops what
no peer covers).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

WG_DEVICE = "cilium_wg0"
WG_PORT = 51871
WG_PUBKEY_ANNOTATION = "network.cilium.io/wg-pub-key"
# Cilium lowers the MTU by 80 for WireGuard: outer IPv6 40 (IPv4: 20) + UDP 8 + WireGuard 32.
WG_OVERHEAD = 80
KEY_BYTES = 32


@dataclass(frozen=True)
class WgNode:
    """What encryption needs to know about one node (from its Node object)."""

    name: str
    internal_ip: str
    pod_cidrs: tuple[str, ...]
    router_ip: str = ""
    public_key: str = ""  # base64, as `wg pubkey` prints it; "" until the node publishes it


@dataclass(frozen=True)
class WgPeer:
    node: str
    public_key: str  # base64
    endpoint: str  # ip:port
    allowed_ips: tuple[str, ...]  # sorted CIDRs


def key_problem(key: str) -> str:
    """Why ``key`` is not a WireGuard key (base64 of 32 bytes), or "" when it is one."""
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        return "not base64"
    return "" if len(raw) == KEY_BYTES else f"{len(raw)} bytes, a WireGuard key has {KEY_BYTES}"


def key_hex(key: str) -> str:
    """A base64 key as the hex the WireGuard configuration protocol takes."""
    return base64.b64decode(key, validate=True).hex()


def key_b64(hexkey: str) -> str:
    return base64.b64encode(bytes.fromhex(hexkey)).decode()


def _v4_networks(cidrs: Iterable[str]) -> list[str]:
    out = []
    for cidr in cidrs:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue
        if net.version == 4:
            out.append(str(net))
    return out


def desired_peers(self_name: str, nodes: Iterable[WgNode], port: int = WG_PORT) -> tuple[dict[str, WgPeer], dict[str, str]]:
    """(public key -> peer for every other node with a valid key and an InternalIP,
    node name -> why it is not a peer yet)."""
    peers: dict[str, WgPeer] = {}
    waiting: dict[str, str] = {}
    for node in sorted(nodes, key=lambda n: n.name):
        if node.name == self_name:
            continue
        if not node.internal_ip:
            waiting[node.name] = "no InternalIP"
            continue
        if not node.public_key:
            waiting[node.name] = f"no {WG_PUBKEY_ANNOTATION} annotation yet"
            continue
        if why := key_problem(node.public_key):
            waiting[node.name] = f"{WG_PUBKEY_ANNOTATION}: {why}"
            continue
        if node.public_key in peers:
            waiting[node.name] = f"public key already used by node {peers[node.public_key].node}"
            continue
        hosts = [f"{ip}/32" for ip in (node.internal_ip, node.router_ip) if ip]
        allowed = sorted(set(_v4_networks([*node.pod_cidrs, *hosts])),
                         key=lambda c: (ipaddress.IPv4Network(c).network_address, c))
        peers[node.public_key] = WgPeer(node.name, node.public_key, f"{node.internal_ip}:{port}", tuple(allowed))
    return peers, waiting


def encrypted_cidrs(self_name: str, nodes: Iterable[WgNode]) -> set[str]:
    """Other nodes' pod CIDRs: routed into the WireGuard device (and blackholed behind it)."""
    return set(_v4_networks(c for n in nodes if n.name != self_name for c in n.pod_cidrs))


def status_text(device: str, public_key: str, port: int, peers: int) -> str:
    """The ``Encryption:`` line's detail, as cilium-dbg status prints it for WireGuard."""
    return f"[{device} (Pubkey: {public_key}, Port: {port}, Peers: {peers})]"
