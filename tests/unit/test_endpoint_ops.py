"""The endpoints map (mb_endpoints + mb_lxc) written by its reconciler, on the in-memory datapath:
a failing row shows ``error`` while the others go in, converges once the fault clears, and the full
prune removes entries and device bindings nobody asked for. No root, no kernel."""

from __future__ import annotations

from membrane.datapath.fake import FakeDatapath
from membrane.datapath.maps.endpoint_ops import EndpointsOps
from membrane.datapath.maps.endpoints import EndpointRecord
from membrane.state.reconciler import DONE, ERROR, Reconciler
from membrane.state.table import Table


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(ifindex: int, ep_id: int, identity: int = 0) -> EndpointRecord:
    return EndpointRecord(ifindex=ifindex, ep_id=ep_id, pod_mac="02:00:00:00:00:01", lxc_mac="02:00:00:00:00:02",
                          sec_identity=identity)


def setup(dp: FakeDatapath | None) -> tuple[Table[str, EndpointRecord], Reconciler[str, EndpointRecord], Clock]:
    table: Table[str, EndpointRecord] = Table("endpoints", initialized=False)
    clock = Clock()
    rec: Reconciler[str, EndpointRecord] = Reconciler(
        table, EndpointsOps(lambda: dp.endpoints if dp is not None else None, table.items),
        name="bpf-endpoints", clock=clock, prune_interval=60.0)
    return table, rec, clock


def test_rows_reach_the_map_with_their_device_bindings_and_a_removed_row_leaves_both():
    dp = FakeDatapath()
    table, rec, _ = setup(dp)
    table.upsert("10.0.1.5", record(11, 1))
    table.upsert("10.0.1.6", record(12, 2))
    table.mark_initialized()
    assert rec.run_once()
    assert dp.endpoints.entries == {"10.0.1.5": record(11, 1), "10.0.1.6": record(12, 2)}
    assert dp.endpoints.devices == {11: "10.0.1.5", 12: "10.0.1.6"}
    table.upsert("10.0.1.5", record(11, 1, identity=4242))
    table.delete("10.0.1.6")
    assert rec.run_once()
    assert dp.endpoints.entries == {"10.0.1.5": record(11, 1, identity=4242)}
    assert dp.endpoints.devices == {11: "10.0.1.5"}


def test_a_failing_row_shows_error_the_others_are_applied_and_it_converges_once_the_fault_clears():
    dp = FakeDatapath()
    table, rec, clock = setup(dp)
    dp.faults.fail("mb_endpoints", "10.0.1.6")
    table.upsert_many({"10.0.1.5": record(11, 1), "10.0.1.6": record(12, 2), "10.0.1.7": record(13, 3)})
    table.mark_initialized()
    assert not rec.run_once()
    status = rec.status("10.0.1.6")
    assert status is not None and status.state == ERROR and "injected fault" in status.message
    assert set(dp.endpoints.entries) == {"10.0.1.5", "10.0.1.7"}
    assert rec.health().to_dict()["errors"] == 1
    dp.faults.clear()
    clock.now += 1.0  # past the row's backoff
    assert rec.run_once()
    done = rec.status("10.0.1.6")
    assert done is not None and done.state == DONE
    assert set(dp.endpoints.entries) == {"10.0.1.5", "10.0.1.6", "10.0.1.7"}


def test_the_full_prune_removes_entries_and_bindings_nobody_asked_for_and_repairs_drift():
    dp = FakeDatapath()
    dp.endpoints.update("10.0.1.99", record(99, 9))  # left by a crash: no endpoint any more
    dp.endpoints.devices[98] = "10.0.1.98"  # a binding whose entry is gone
    table, rec, _ = setup(dp)
    table.upsert("10.0.1.5", record(11, 1))
    table.mark_initialized()
    assert rec.run_once()  # the first pass is done: the initial prune runs in the same step
    assert dp.endpoints.entries == {"10.0.1.5": record(11, 1)}
    assert dp.endpoints.devices == {11: "10.0.1.5"}
    dp.endpoints.entries["10.0.1.5"] = record(11, 1, identity=7)  # drift behind the reconciler's back
    EndpointsOps(lambda: dp.endpoints, table.items).prune(table.keys())
    assert dp.endpoints.entries["10.0.1.5"] == record(11, 1)


def test_no_datapath_yet_leaves_rows_pending_with_the_reason():
    table, rec, _ = setup(None)
    table.upsert("10.0.1.5", record(11, 1))
    table.mark_initialized()
    assert not rec.run_once()
    status = rec.status("10.0.1.5")
    assert status is not None and status.state == ERROR and "not loaded" in status.message
