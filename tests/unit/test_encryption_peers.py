"""WireGuard peers and routes computed from the node table (membrane.endpoint.encryption)."""

from __future__ import annotations

import base64

from membrane.endpoint.encryption import (
    WgNode,
    desired_peers,
    encrypted_cidrs,
    key_b64,
    key_hex,
    key_problem,
    status_text,
)

K1 = base64.b64encode(bytes(range(32))).decode()
K2 = base64.b64encode(bytes(range(1, 33))).decode()


def _nodes() -> list[WgNode]:
    return [
        WgNode("k8s-ctr", "192.168.10.100", ("10.0.0.0/24",), "10.0.0.1", K1),
        WgNode("k8s-w1", "192.168.10.101", ("10.0.1.0/24",), "10.0.1.1", K2),
        WgNode("k8s-w2", "192.168.10.102", ("10.0.2.0/24",), "10.0.2.1", ""),
    ]


def test_every_other_node_with_a_key_is_a_peer_with_pod_cidrs_and_node_ips() -> None:
    peers, waiting = desired_peers("k8s-ctr", _nodes())
    assert list(peers) == [K2]
    assert peers[K2].endpoint == "192.168.10.101:51871"
    assert peers[K2].allowed_ips == ("10.0.1.0/24", "10.0.1.1/32", "192.168.10.101/32")
    assert waiting == {"k8s-w2": "no network.cilium.io/wg-pub-key annotation yet"}


def test_a_node_never_peers_with_itself_and_bad_keys_are_named() -> None:
    nodes = [*_nodes()[:2], WgNode("k8s-w2", "192.168.10.102", ("10.0.2.0/24",), "", "bm90LWEta2V5")]
    peers, waiting = desired_peers("k8s-w1", nodes)
    assert [p.node for p in peers.values()] == ["k8s-ctr"]
    assert waiting["k8s-w2"] == "network.cilium.io/wg-pub-key: 9 bytes, a WireGuard key has 32"


def test_a_duplicate_key_is_not_a_second_peer() -> None:
    nodes = [*_nodes()[:2], WgNode("k8s-w2", "192.168.10.102", ("10.0.2.0/24",), "", K2)]
    peers, waiting = desired_peers("k8s-ctr", nodes)
    assert [p.node for p in peers.values()] == ["k8s-w1"]
    assert waiting["k8s-w2"] == "public key already used by node k8s-w1"


def test_routes_cover_every_remote_pod_cidr_even_before_its_key() -> None:
    assert encrypted_cidrs("k8s-ctr", _nodes()) == {"10.0.1.0/24", "10.0.2.0/24"}


def test_keys_convert_between_base64_and_hex() -> None:
    assert key_hex(K1) == bytes(range(32)).hex()
    assert key_b64(key_hex(K2)) == K2
    assert key_problem(K1) == ""
    assert key_problem("%%%") == "not base64"


def test_status_text_matches_cilium() -> None:
    assert status_text("cilium_wg0", K1, 51871, 2) == f"[cilium_wg0 (Pubkey: {K1}, Port: 51871, Peers: 2)]"
