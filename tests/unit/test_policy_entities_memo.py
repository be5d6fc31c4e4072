"""The policy controller works out each entity's identities only when the identities changed (issue 16:
that pass over every identity per entity was half its CPU in a pod burst, which changes none)."""

from __future__ import annotations

import pytest

from membrane.agent import policy_sync
from membrane.identity.allocator import encode_labels
from membrane.identity.labels import pod_identity_labels
from tests.unit.test_policy_namedports import IDS_PREFIX, agent_for


def test_entities_follow_identity_changes_and_only_those(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = policy_sync.entity_identities

    def counting(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(policy_sync, "entity_identities", counting)
    agent = agent_for([])
    agent.sync.sync()
    assert calls  # the first run works them out
    before = agent.sync.entities["cluster"]
    calls.clear()
    agent.pods.put("/pods/x/other", b"{}")  # a pod event: no identity changes
    agent.sync.sync()
    assert calls == []
    labels = pod_identity_labels({"app": "new"}, "x", {})
    agent.sync.identity_mirror.put(f"{IDS_PREFIX}id/777", encode_labels(labels))
    agent.sync.sync()
    assert calls and agent.sync.entities["cluster"] == before | {777}
