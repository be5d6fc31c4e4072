"""Rolling-update arithmetic and revision history (membrane.model.rollout)."""

from __future__ import annotations

import pytest

from membrane.model.rollout import record_revision, rolling_step, surge_and_unavailable, undo_target


def _dep(**rolling: object) -> dict:
    return {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": rolling}}}


def test_surge_and_unavailable_defaults_and_rounding() -> None:
    assert surge_and_unavailable({"spec": {}}, 10) == (3, 2)  # 25%: surge rounds up, unavailable down
    assert surge_and_unavailable({"spec": {}}, 1) == (1, 0)
    assert surge_and_unavailable(_dep(maxSurge=0, maxUnavailable=0), 4) == (0, 1)
    assert surge_and_unavailable(_dep(maxSurge="50%", maxUnavailable=2), 3) == (2, 2)
    assert surge_and_unavailable({"spec": {"strategy": {"type": "Recreate"}}}, 3) == (0, 3)


def test_rolling_step_keeps_bounds() -> None:
    # 4 replicas, surge 1, unavailable 1, all 4 old ready: one new pod, one old ready pod goes
    assert rolling_step(4, 1, 1, new=0, new_ready=0, old_ready=4, old_unready=0) == (1, 0, 1)
    # surge only: nothing goes until a new pod is ready
    assert rolling_step(2, 1, 0, new=1, new_ready=0, old_ready=2, old_unready=0) == (0, 0, 0)
    assert rolling_step(2, 1, 0, new=1, new_ready=1, old_ready=2, old_unready=0) == (0, 0, 1)
    # unready old pods go first; they count for nothing
    assert rolling_step(3, 0, 1, new=0, new_ready=0, old_ready=2, old_unready=1) == (0, 1, 0)


def test_simulated_rollout_never_breaks_the_bounds() -> None:
    desired, surge, unavailable = 5, 2, 1
    new = new_ready = 0
    old = 5
    for _ in range(50):
        create, drop_unready, drop_ready = rolling_step(desired, surge, unavailable, new, new_ready, old, 0)
        assert drop_unready == 0
        old -= drop_ready
        new += create
        assert new + old <= desired + surge and new_ready + old >= desired - unavailable
        new_ready = new  # the new pods become ready before the next pass
        if old == 0 and new == desired:
            break
    assert (old, new) == (0, desired)


def test_revision_history_and_undo() -> None:
    t1, t2 = {"spec": {"image": "a"}}, {"spec": {"image": "b"}}
    h = record_revision(None, "h1", t1)
    assert record_revision(h, "h1", t1) == h  # unchanged template: no new revision
    h = record_revision(h, "h2", t2)
    assert [(e["revision"], e["hash"]) for e in h] == [(1, "h1"), (2, "h2")]
    assert undo_target(h)["template"] == t1
    assert undo_target(h, to_revision=2)["hash"] == "h2"
    h = record_revision(h, "h1", t1)  # the undo: revision 1 comes back as 3
    assert [(e["revision"], e["hash"]) for e in h] == [(2, "h2"), (3, "h1")]
    with pytest.raises(LookupError, match="no rollout history"):
        undo_target(h[:1])
    with pytest.raises(LookupError, match="revision 9"):
        undo_target(h, to_revision=9)
    many = None
    for i in range(15):
        many = record_revision(many, f"h{i}", {})
    assert len(many) == 10 and many[0]["revision"] == 6
