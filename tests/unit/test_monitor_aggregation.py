"""Monitor aggregation settings: Helm values (bpf.monitorAggregation / monitorInterval / monitorFlags)
to the level, interval and TCP flag mask the datapath gets; bad values refused with the key and why."""

from __future__ import annotations

import pytest

from membrane.model import helm_keys
from membrane.model.config import ClusterConfig
from membrane.model.errors import ValidationError
from membrane.model.helm_release import resolve
from membrane.model.helm_values import combine, parse_set
from membrane.model.monitor_aggregation import (
    LOW,
    LOWEST,
    MAXIMUM,
    MEDIUM,
    NONE,
    MonitorAggregation,
    parse_flags,
)


def _resolve(*sets: str) -> ClusterConfig:
    return resolve(combine([], [parse_set(s) for s in sets])).config


def test_the_default_is_cilium_default_medium_5s_all_flags() -> None:
    agg = ClusterConfig().monitor_aggregation()
    assert agg == MonitorAggregation(MEDIUM, 5, 0xFF) and agg.name == "Medium"


@pytest.mark.parametrize("raw,level", [
    ("none", NONE), ("disabled", NONE), ("lowest", LOWEST), ("low", LOW), ("medium", MEDIUM), ("Medium", MEDIUM),
    ("max", MAXIMUM), ("maximum", MAXIMUM), ("0", NONE), ("2", LOW), ("4", MAXIMUM),
])
def test_helm_value_to_level(raw: str, level: int) -> None:
    assert _resolve(f"bpf.monitorAggregation={raw}").monitor_aggregation().level == level


def test_interval_and_flags_from_helm() -> None:
    agg = _resolve("bpf.monitorAggregation=medium", "bpf.monitorInterval=1m",
                   "bpf.monitorFlags=syn fin  rst").monitor_aggregation()
    assert agg == MonitorAggregation(MEDIUM, 60, 0x01 | 0x02 | 0x04)
    assert _resolve("bpf.monitorFlags=all").monitor_aggregation().flags == 0xFF
    # cilium-config's monitor-aggregation-flags writes them with commas (Helm's --set splits on those)
    assert parse_flags("syn,ack", "x") == 0x12


@pytest.mark.parametrize("setting,message", [
    ("bpf.monitorAggregation=loud", "values: bpf.monitorAggregation: 'loud' is not a monitor "
                                    "aggregation level (none, lowest, low, medium, maximum, or 0..4)"),
    ("bpf.monitorAggregation=5", "'5': a level number must be between 0 and 4"),
    ("bpf.monitorInterval=500ms", "bpf.monitorInterval: '500ms': must be a whole number of seconds between 1s and 65535s"),
    ("bpf.monitorInterval=soon", "bpf.monitorInterval: 'soon' is not a duration"),
    ("bpf.monitorInterval=20h", "must be a whole number of seconds between 1s and 65535s"),
    ("bpf.monitorFlags=syn bogus", "bpf.monitorFlags: 'bogus' is not a TCP flag (one of fin, syn, rst, psh, ack, urg, "
                                   "ece, cwr, or all)"),
    ("bpf.monitorFlags=,", "bpf.monitorFlags: empty"),
])
def test_invalid_values_are_refused_with_the_key_and_the_reason(setting: str, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        _resolve(setting)
    assert message in str(err.value), str(err.value)


def test_a_stored_config_keeps_the_setting() -> None:
    cfg = _resolve("bpf.monitorAggregation=none", "bpf.monitorInterval=10s")
    again = ClusterConfig.from_dict(cfg.to_dict())
    assert again.monitor_aggregation() == MonitorAggregation(NONE, 10, 0xFF)


def test_the_keys_carry_cilium_option_names() -> None:
    options = {key: getattr(helm_keys.lookup(key), "option", None)
               for key in ("bpf.monitorAggregation", "bpf.monitorInterval", "bpf.monitorFlags")}
    assert options == {"bpf.monitorAggregation": "MonitorAggregation",
                       "bpf.monitorInterval": "MonitorAggregationInterval",
                       "bpf.monitorFlags": "MonitorAggregationFlags"}
