"""An agent's death must not withdraw its running pods (issue 18.1): the pure grace and GC decisions."""

from __future__ import annotations

import json

from membrane.identity.allocator import IdentityAllocator
from membrane.identity.gc import identity_gc
from membrane.ipcache.ownership import identities_in_use, orphaned_by_node, owner_of, stale_owned
from membrane.model.node_conditions import agent_conditions, is_up
from tests.unit.test_identity_allocator import PREFIX, MemoryKV, StoreTxnOps
from tests.unit.test_identity_node_refs import web


def entry(identity: int, node: str) -> str:
    return json.dumps({"identity": identity, "node": node})


def test_unused_identity_is_only_marked_then_deleted_after_the_grace() -> None:
    first = identity_gc({256, 257}, referenced=set(), in_use=set(), marks={}, now=100.0, grace=30)
    assert first.delete == frozenset() and first.marks == {256: 100.0, 257: 100.0}
    later = identity_gc({256, 257}, referenced={257}, in_use=set(), marks=first.marks, now=129.0, grace=30)
    assert later.delete == frozenset() and later.marks == {256: 100.0}  # 257 used again: mark cleared
    last = identity_gc({256, 257}, referenced=set(), in_use=set(), marks=later.marks, now=130.0, grace=30)
    assert last.delete == frozenset({256}) and last.marks == {257: 130.0}


def test_identity_of_a_running_endpoint_survives_without_any_node_reference() -> None:
    # The agent of the pod's node is dead and its refs are gone; the endpoint's ipcache entry is not.
    published = {"/ipcache/10.0.1.5%2F32": entry(300, "k8s-w1")}
    in_use = identities_in_use(published.values())
    decision = identity_gc({300}, referenced=set(), in_use=in_use, marks={300: 0.0}, now=1e9, grace=30)
    assert in_use == {300} and decision.delete == frozenset() and decision.marks == {}


def test_a_restarted_agent_withdraws_only_its_own_stale_entries() -> None:
    stored = {"a": entry(300, "w1"), "b": entry(301, "w1"), "c": entry(302, "w2"), "d": "not json"}
    assert stale_owned(stored, "w1", wanted={"a"}) == ["b"]
    assert stale_owned(stored, "w2", wanted=set()) == ["c"]
    assert owner_of("not json") == "" and owner_of(json.dumps([1])) == ""


def test_entries_of_a_deleted_node_are_orphans_and_ownerless_ones_are_left_alone() -> None:
    stored = {"a": entry(300, "w1"), "b": entry(301, "gone"), "c": json.dumps({"identity": 5})}
    assert orphaned_by_node(stored, ["w1", "w2"]) == ["b"]


def test_identities_in_use_skips_unreadable_values() -> None:
    assert identities_in_use([entry(300, "w1"), "{", json.dumps({"identity": True}), json.dumps({})]) == {300}


def test_allocator_collects_only_what_the_decision_allows() -> None:
    alloc = IdentityAllocator(MemoryKV(), StoreTxnOps(), PREFIX)
    a, b = alloc.allocate("n1", web("a")), alloc.allocate("n2", web("b"))
    alloc.release("n1", a)
    alloc.release("n2", b)
    assert alloc.usage() == ({a, b}, set())
    assert alloc.collect_garbage(only={b}) == [b]
    assert alloc.list().keys() == {a}
    c = alloc.allocate("n1", web("c"))
    assert alloc.node_references("n1") == [c] and alloc.node_references("n2") == []


def test_node_conditions_follow_the_agent_and_keep_transition_times() -> None:
    seeded = [{"type": "Ready", "status": "False", "reason": "AgentNotReady"}, {"type": "MemoryPressure"}]
    up = agent_conditions(seeded, True, "t1")
    assert up is not None and is_up(up)
    assert {c["type"]: c.get("status") for c in up} == {"Ready": "True", "MemoryPressure": None,
                                                    "NetworkUnavailable": "False"}
    assert agent_conditions(up, True, "t2") is None  # nothing to write
    down = agent_conditions(up, False, "t3")
    assert down is not None and not is_up(down)
    ready = next(c for c in down if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["lastTransitionTime"]) == ("Unknown", "NodeStatusUnknown", "t3")
    assert next(c for c in down if c["type"] == "NetworkUnavailable")["status"] == "True"
