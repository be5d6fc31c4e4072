"""The Grafana dashboards in dashboards/ query only metrics we export: every metric name in every panel
expression is a family the agent registers (a histogram's _bucket/_sum/_count count as the family).
The lab test tests/lab/test_hubble_api.py checks the same names against a live scrape."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from membrane.hubble.agent_metrics import AgentMetrics
from membrane.hubble.metrics import HANDLERS, HubbleMetrics, Registry

DASHBOARDS = sorted((Path(__file__).parents[2] / "dashboards").glob("*.json"))
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset", "inf", "nan"}
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, label names, keywords or strings)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        following = text[m.end():].lstrip()
        if following.startswith("(") or m.group(0) in _KEYWORDS:
            continue
        names.add(m.group(0))
    return names


def expressions(path: Path) -> list[str]:
    board = json.loads(path.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [v["query"].removeprefix("label_values(").split(",")[0] for v in board["templating"]["list"]
              if v.get("type") == "query"]
    return exprs


def family_of(name: str, families: set[str]) -> str | None:
    if name in families:
        return name
    for suffix in _HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in families:
            return name.removesuffix(suffix)
    return None


def exported_families() -> set[str]:
    registry = Registry()
    AgentMetrics(registry)
    HubbleMetrics(registry, list(HANDLERS))
    return set(registry.families)


def test_the_extractor() -> None:
    assert metric_names('histogram_quantile(0.99, sum by (le) (rate(a_bucket{x=~"$i"}[5m])))') == {"a_bucket"}
    assert metric_names('topk(10, sum without (port) (b_total{q="c_total"})) / on (x) group_left c') == {
        "b_total", "c"}


def test_there_are_dashboards_for_the_agent_and_hubble() -> None:
    assert {p.name for p in DASHBOARDS} >= {"membrane-agent.json", "membrane-hubble.json"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_expression_reads_exported_metrics(path: Path) -> None:
    families = exported_families()
    names = {n for e in expressions(path) for n in metric_names(e)}
    assert names, f"{path.name}: no metric found"
    missing = sorted(n for n in names if family_of(n, families) is None)
    assert not missing, f"{path.name}: metrics we do not export: {missing}"
