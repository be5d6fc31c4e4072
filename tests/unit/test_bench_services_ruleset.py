"""bench/services.py: the kube-proxy nat ruleset it restores (no root needed)."""

from __future__ import annotations

from bench.services import Cluster, full_ruleset, partial_ruleset, rule_count


def test_full_ruleset_declares_every_chain_before_any_rule():
    lines = full_ruleset(Cluster(3)).splitlines()
    assert lines[0] == "*nat" and lines[-1] == "COMMIT"
    last_decl = max(i for i, line in enumerate(lines) if line.startswith(":"))
    first_rule = min(i for i, line in enumerate(lines) if line.startswith("-A "))
    assert last_decl < first_rule
    declared = {line[1:].split()[0] for line in lines if line.startswith(":")}
    targets = {line.split(" -j ")[1].split()[0] for line in lines if " -j KUBE-" in line}
    assert targets <= declared
    assert len(declared) == 4 + 3 * 11  # top-level + per service one SVC and 10 SEP chains
    assert rule_count("\n".join(lines)) == 4 + 3 + 1 + 3 * (1 + 10 + 20)


def test_statistic_probabilities_and_partial_sync():
    cluster = Cluster(2)
    cluster.add_backend(1)
    rules = full_ruleset(cluster).splitlines()
    svc1 = [r for r in rules if "default/svc-1:http -> " in r]
    assert len(svc1) == 11 and "--probability 0.09090909091" in svc1[0] and "statistic" not in svc1[-1]
    partial = partial_ruleset(cluster, 1)
    assert "svc-0:http ->" not in partial and partial.count(":KUBE-SEP-") == 1
    assert "-A KUBE-SERVICES -d 10.96.0.1/32" in partial  # KUBE-SERVICES is always rewritten in full
