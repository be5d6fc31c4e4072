"""mb_host_ep through its reconciler (fake datapath, no root): a failed write shows as the row's error
and stops the policy controller's step, the reconciler retries it until the fault clears, prune repairs
drift, and before the agent has decided anything the entry an earlier agent left stays."""

from __future__ import annotations

import time
from typing import Any

import pytest

from membrane.agent.host_firewall import HostFirewall
from membrane.agent.ipcache_sync import NotApplied
from membrane.datapath.fake import FakeDatapath
from membrane.datapath.maps.host_endpoint import HostEndpointState
from membrane.datapath.maps.host_endpoint_ops import HOST_EP_ROW
from membrane.policy.hostpolicy import HOST_ENDPOINT_ID

NODE: dict[str, Any] = {"metadata": {"name": "k8s-w1", "labels": {}}}


def firewall(dp: FakeDatapath | None, enabled: bool = True) -> HostFirewall:
    return HostFirewall(enabled, lambda: NODE, lambda: dp.host_endpoint if dp is not None else None)  # type: ignore[arg-type, return-value]


def test_a_failed_write_is_the_rows_error_and_converges_once_the_fault_clears() -> None:
    dp = FakeDatapath()
    fw = firewall(dp)
    dp.faults.fail("mb_host_ep")
    with pytest.raises(NotApplied, match="mb_host_ep"):
        fw.enforce(True, False)
    status = fw.reconciler.status(HOST_EP_ROW)
    assert status is not None and status.state == "error" and "injected fault" in status.message
    assert dp.host_endpoint.state == HostEndpointState() and fw.state() is None
    assert fw.reconciler.health().counts.get("error") == 1
    dp.faults.clear()
    deadline = time.monotonic() + 5
    while not fw.reconciler.run_once():  # the reconciler's own retry (after its 0.1 s backoff), no controller
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert dp.host_endpoint.state == HostEndpointState(HOST_ENDPOINT_ID, True, False)
    fw.enforce(True, False)  # the controller's next pass sees it in and records it
    assert fw.state() == HostEndpointState(HOST_ENDPOINT_ID, True, False)


def test_without_a_datapath_the_row_waits_and_nothing_is_raised() -> None:
    fw = firewall(None)
    fw.enforce(True, True)
    assert fw.state() is None
    status = fw.reconciler.status(HOST_EP_ROW)
    assert status is not None and status.state != "done"


def test_prune_rewrites_an_entry_changed_behind_the_agent() -> None:
    dp = FakeDatapath()
    fw = firewall(dp)
    fw.enforce(False, True)
    dp.host_endpoint.state = HostEndpointState()  # someone cleared it
    fw.reconciler.ops.prune({HOST_EP_ROW})
    assert dp.host_endpoint.state == HostEndpointState(HOST_ENDPOINT_ID, False, True)


def test_before_any_row_prune_keeps_what_an_earlier_agent_wrote() -> None:
    dp = FakeDatapath()
    dp.host_endpoint.state = HostEndpointState(HOST_ENDPOINT_ID, True, True)
    fw = firewall(dp)
    assert fw.reconciler.run_once()  # initial sync and its prune, with an empty table
    assert dp.host_endpoint.state == HostEndpointState(HOST_ENDPOINT_ID, True, True)


def test_a_disabled_firewall_clears_the_entry() -> None:
    dp = FakeDatapath()
    dp.host_endpoint.state = HostEndpointState(HOST_ENDPOINT_ID, True, True)
    firewall(dp, enabled=False).enforce(True, True)
    assert dp.host_endpoint.state == HostEndpointState()
