"""StageTimes: per-stage samples of pod starts, their percentiles, buckets and listeners."""

from __future__ import annotations

import threading

import pytest

from membrane.endpoint.model import Endpoint, EndpointTable
from membrane.endpoint.start_stats import BUCKETS, StageTimes, percentile
from membrane.hubble.agent_metrics import AgentMetrics
from membrane.hubble.exposition import parse
from membrane.hubble.metrics import Registry


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
    assert percentile([5.0], 99) == 5.0


def test_summary_counts_sums_percentiles_and_cumulative_buckets() -> None:
    stats = StageTimes()
    for seconds in (0.002, 0.004, 0.2):
        stats.observe("veth", seconds)
    stats.observe("zzz-custom", 1.0)
    stats.observe("total", 0.3)
    summary = stats.summary()
    assert list(summary) == ["veth", "total", "zzz-custom"]  # known stages in their order, others after
    veth = summary["veth"]
    assert veth["count"] == 3 and veth["sum"] == pytest.approx(0.206)
    assert veth["p50"] == 0.004 and veth["p99"] == 0.2 and veth["max"] == 0.2
    assert veth["buckets"]["0.001"] == 0 and veth["buckets"]["0.0025"] == 1
    assert veth["buckets"]["0.005"] == 2 and veth["buckets"]["0.25"] == 3
    assert len(veth["buckets"]) == len(BUCKETS)


def test_percentiles_follow_the_window_counts_do_not() -> None:
    stats = StageTimes(window=2)
    for seconds in (9.0, 0.1, 0.2):
        stats.observe("ipam", seconds)
    entry = stats.summary()["ipam"]
    assert entry["count"] == 3 and entry["max"] == 0.2  # 9.0 fell out of the window


def test_stage_times_a_block_even_when_it_raises() -> None:
    stats = StageTimes()
    with pytest.raises(RuntimeError), stats.stage("bpfAttach"):
        raise RuntimeError("attach failed")
    assert stats.summary()["bpfAttach"]["count"] == 1


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="window 0"):
        StageTimes(window=0)
    with pytest.raises(ValueError, match="scope veth: negative duration"):
        StageTimes().observe("veth", -1.0)


def test_listeners_feed_the_prometheus_histogram() -> None:
    registry = Registry()
    metrics = AgentMetrics(registry)
    stats = StageTimes()
    stats.subscribe(metrics.observe_endpoint_regeneration)
    stats.observe("total", 0.02)
    samples = parse(registry.exposition())
    assert ("cilium_endpoint_regeneration_time_stats_seconds_bucket", {"scope": "total", "le": "0.025"}, 1.0) in samples
    assert ("cilium_endpoint_regeneration_time_stats_seconds_count", {"scope": "total"}, 1.0) in samples


def test_concurrent_observations_are_all_counted() -> None:
    stats = StageTimes()
    threads = [threading.Thread(target=lambda: [stats.observe("veth", 0.001) for _ in range(500)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats.summary()["veth"]["count"] == 2000


def _ep(ep_id: int) -> Endpoint:
    return Endpoint(id=ep_id, container_id=f"c{ep_id}", ifname="eth0", netns="", namespace="default",
                    pod_name=f"p{ep_id}", ipv4=f"10.0.0.{ep_id}", host_ifname=f"lxc{ep_id}", host_ifindex=ep_id,
                    host_mac="", pod_mac="")


def test_next_id_skips_ids_of_endpoints_still_being_created() -> None:
    table = EndpointTable()
    table.put(_ep(1))
    assert table.next_id() == 2
    assert table.next_id(exclude={2, 3}) == 4
