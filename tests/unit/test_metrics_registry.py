"""Registry, exposition format, agent (cilium_*) metrics, the exposition parser of `metrics list`."""

from __future__ import annotations

import math

import pytest

from membrane.cli.metrics_cmds import metrics_rows, parse_exposition, render_metrics_list
from membrane.hubble.agent_metrics import AgentMetrics, AgentSources, drop_reason_text
from membrane.hubble.metrics import Registry, format_value


def test_counter_gauge_and_escaping() -> None:
    reg = Registry()
    c = reg.counter("x_total", "Things\\done\nhere", ["a"])
    c.inc({"a": 'say "hi"\\\n'}, 2)
    reg.gauge("g", "A gauge").set((), 1.5)
    # rendered by prometheus-client: HELP and label values escaped, values as floats
    assert reg.exposition() == (
        "# HELP x_total Things\\\\done\\nhere\n# TYPE x_total counter\n"
        'x_total{a="say \\"hi\\"\\\\\\n"} 2.0\n'
        "# HELP g A gauge\n# TYPE g gauge\ng 1.5\n"
    )
    assert parse_exposition(reg.exposition()) == [("x_total", {"a": 'say "hi"\\\n'}, 2.0), ("g", {}, 1.5)]
    with pytest.raises(ValueError):
        c.inc({"a": "b"}, -1)
    with pytest.raises(ValueError):
        c.inc(["too", "many"])
    assert reg.counter("x_total", "again", ["a"]) is c
    with pytest.raises(ValueError):
        reg.gauge("x_total", "clash", ["a"])


def test_histogram() -> None:
    reg = Registry()
    h = reg.histogram("t_seconds", "Timing", ["scope"], buckets=[0.1, 1.0])
    h.observe(["total"], 0.05)
    h.observe(["total"], 0.5)
    h.observe(["total"], 5)
    lines = reg.exposition().splitlines()
    assert lines[:2] == ["# HELP t_seconds Timing", "# TYPE t_seconds histogram"]
    assert sorted(lines[2:]) == sorted([
        't_seconds_bucket{le="0.1",scope="total"} 1.0',
        't_seconds_bucket{le="1.0",scope="total"} 2.0',
        't_seconds_bucket{le="+Inf",scope="total"} 3.0',
        't_seconds_sum{scope="total"} 5.55',
        't_seconds_count{scope="total"} 3.0',
    ])


def test_format_value() -> None:
    assert format_value(3.0) == "3"
    assert format_value(0.25) == "0.25"
    assert format_value(math.inf) == "+Inf"
    assert format_value(math.nan) == "NaN"


def test_agent_metrics_from_callbacks_and_pushes() -> None:
    reg = Registry()
    state = {"ready": 3, "waiting-for-identity": 1}
    am = AgentMetrics(reg, AgentSources(
        endpoint_states=lambda: state,
        identities=lambda: {"cluster_local": 4, "reserved": 10},
        policy=lambda: (2, 7),
        datapath=lambda: ({(133, "ingress"): (5, 300), (181, "EGRESS"): (1, 60)}, {"INGRESS": (100, 9000)}),
        controllers_failing=lambda: failing[0],
        unreachable_nodes=lambda: 2,
    ))
    failing = [1]
    am.map_op("policy", "update")
    am.map_op("policy", "update")
    am.map_op("ipcache", "delete", "fail")
    am.observe_policy_regeneration("total", 0.02)
    samples = {(s.name, s.labels): s.value for s in reg.samples()}
    assert samples[("cilium_endpoint", ())] == 4
    assert samples[("cilium_endpoint_state", (("endpoint_state", "ready"),))] == 3
    assert samples[("cilium_identity", (("type", "reserved"),))] == 10
    assert samples[("cilium_policy", ())] == 2
    assert samples[("cilium_policy_max_revision", ())] == 7
    assert samples[("cilium_drop_count_total", (("reason", "Policy denied"), ("direction", "INGRESS")))] == 5
    assert samples[("cilium_drop_bytes_total", (("reason", "Policy denied by denylist"),
                                                ("direction", "EGRESS")))] == 60
    assert samples[("cilium_forward_count_total", (("direction", "INGRESS"),))] == 100
    assert samples[("cilium_bpf_map_ops_total", (("map_name", "policy"), ("operation", "update"),
                                                 ("outcome", "success")))] == 2
    assert samples[("cilium_policy_regeneration_time_stats_seconds_count", (("scope", "total"),))] == 1
    assert samples[("cilium_controllers_failing", ())] == 1
    assert samples[("cilium_unreachable_nodes", ())] == 2
    state.pop("waiting-for-identity")
    failing[0] = 0
    samples = {(s.name, s.labels): s.value for s in reg.samples()}
    assert ("cilium_endpoint_state", (("endpoint_state", "waiting-for-identity"),)) not in samples
    assert samples[("cilium_endpoint", ())] == 3
    assert samples[("cilium_controllers_failing", ())] == 0
    assert drop_reason_text(999) == "999"


def test_every_family_has_help_and_type_and_parses_back() -> None:
    reg = Registry()
    AgentMetrics(reg).set_datapath_counters({(133, "INGRESS"): (1, 2)}, {})
    text = reg.exposition()
    for name in reg.families:
        assert f"# HELP {name} " in text and f"# TYPE {name} " in text
    parsed = parse_exposition(text)
    assert ("cilium_drop_count_total", {"reason": "Policy denied", "direction": "INGRESS"}, 1.0) in parsed


def test_parse_exposition_and_list_rendering() -> None:
    text = ('# HELP a x\n# TYPE a gauge\na{z="1",b="q\\"uote"} 3\nb 2.5 1700000000\n'
            't_bucket{le="+Inf"} 1\nt_sum 0.5\n')
    assert parse_exposition(text) == [("a", {"z": "1", "b": 'q"uote'}, 3.0), ("b", {}, 2.5),
                                      ("t_bucket", {"le": "+Inf"}, 1.0), ("t_sum", {}, 0.5)]
    rows = metrics_rows(text)
    assert rows == [("a", 'b=q"uote z=1', 3.0), ("b", "", 2.5), ("t_sum", "", 0.5)]
    assert render_metrics_list(rows).splitlines() == [
        "Metric   Labels         Value",
        'a        b=q"uote z=1   3.000000',
        "b                       2.500000",
        "t_sum                   0.500000",
    ]
    with pytest.raises(ValueError):
        parse_exposition("not a metric line at all {")


def test_exposition_of_one_prefix_for_hubbles_own_endpoint() -> None:
    reg = Registry()
    reg.counter("hubble_flows_processed_total", "Flows").inc((), 3)
    reg.gauge("cilium_version", "Version").set((), 1)
    hubble_only = reg.exposition("hubble_")
    assert "hubble_flows_processed_total 3.0" in hubble_only and "cilium_" not in hubble_only
    assert "cilium_version 1.0" in reg.exposition()


def test_cilium_version_is_one_series_with_version_and_arch() -> None:
    reg = Registry()
    AgentMetrics(reg)
    [(name, labels, value)] = [r for r in parse_exposition(reg.exposition()) if r[0] == "cilium_version"]
    assert value == 1 and labels["version"] == "0.1.0" and labels["arch"]
