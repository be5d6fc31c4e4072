"""bench/kubeproxy_rules.py: kube-proxy nftables mode's table and partial sync (no root needed)."""

from __future__ import annotations

from bench.kubeproxy_rules import (
    Cluster,
    _hashed,
    nft_counts,
    nft_endpoint_chain,
    nft_full,
    nft_partial,
    nft_service_chain,
)


def test_chain_names_hash_like_kube_proxy():
    # the examples in kube-proxy's servicePortChainNameBase / servicePortEndpointChainNameBase
    assert _hashed("ns1/svc1/tcp/p80") == "ULMVA6XW-ns1/svc1/tcp/p80"
    assert _hashed("ns1/svc1/tcp/p80__10.180.0.1/80") == "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    assert nft_service_chain(0).startswith("service-") and nft_service_chain(0).endswith("-default/svc-0/tcp/http")
    assert nft_endpoint_chain(0, 1).endswith("-default/svc-0/tcp/http__10.1.0.1/8080")


def test_full_sync_declares_every_chain_before_its_use():
    (script,) = nft_full(Cluster(3))
    lines = script.splitlines()
    assert lines[0].startswith("add table ip kube-proxy")
    added: set[str] = set()
    for line in lines:
        words = line.split()
        if words[:2] == ["add", "chain"]:
            added.add(words[4])
        elif words[:2] == ["add", "rule"]:
            assert words[4] in added
            targets = [w.rstrip(",") for k, w in enumerate(words) if k and words[k - 1] in ("goto", "jump")]
            assert set(targets) <= added, line
    assert nft_counts(script) == (16 + 3 * 11, 22 + 3 * 22)  # 16 fixed chains + 22 rules, then 11 + 22 per Service
    assert sum(line.startswith("add element ip kube-proxy service-ips") for line in lines) == 3


def test_full_sync_in_chunks_reaches_the_same_state():
    cluster = Cluster(5)
    (whole,) = nft_full(cluster)
    parts = nft_full(cluster, chunk=2)
    assert len(parts) == 3 and "add table" in parts[0] and "add table" not in parts[1]
    assert sorted("".join(parts).splitlines()) == sorted(whole.splitlines())


def test_partial_sync_rewrites_only_the_changed_service():
    cluster = Cluster(4)
    cluster.add_backend(2)
    script = nft_partial(cluster, 2)
    assert "svc-1/" not in script and "add element" not in script
    assert script.count("flush chain") == 12  # 11 endpoint chains and the service chain
    assert "numgen random mod 11 vmap" in script
    assert f"add chain ip kube-proxy {nft_endpoint_chain(2, cluster.backends[2][-1])}" in script
    assert script.count("dnat to") == 11 and nft_counts(script) == (12, 2 + 22)
