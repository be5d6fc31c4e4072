"""The chaos test's outage arithmetic (tests/lab/outages.py): an outage must be measured, not missed."""

from __future__ import annotations

import pytest

from tests.lab.outages import longest_after_each_kill, outages


def test_no_failure_no_outage() -> None:
    assert outages([(0.0, True), (0.1, True)], 0.1) == []


def test_a_run_of_failures_lasts_until_the_next_success() -> None:
    probes = [(0.0, True), (0.1, False), (0.2, False), (0.3, True), (0.4, False), (0.5, True)]
    assert outages(probes, 0.1) == [(0.1, 0.3), (0.4, 0.5)]


def test_order_of_reports_does_not_matter_and_a_trailing_run_counts() -> None:
    assert outages([(0.2, False), (0.0, True), (0.1, False)], 0.1) == [(0.1, pytest.approx(0.3))]


def test_each_outage_is_charged_to_the_last_kill_before_it() -> None:
    runs = [(1.0, 1.5), (12.0, 15.0), (13.0, 13.5), (30.0, 30.2)]
    kills = [("agent", 10.0), ("etcd", 20.0), ("kubelet", 40.0)]
    assert longest_after_each_kill(runs, kills) == {
        "baseline": 0.5, "agent": 3.0, "etcd": pytest.approx(0.2), "kubelet": 0.0}
