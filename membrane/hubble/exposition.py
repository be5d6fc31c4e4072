"""The Prometheus text format, written and read by the well-kept ``prometheus-client``.

The agent counts into its own families (:class:`membrane.hubble.metrics.MetricFamily`): a dict
increment per flow is what the event path can afford, and values read back from BPF maps are absolute.
What leaves the process, the exposition at ``/metrics``, is rendered by ``prometheus_client`` from
those families, and ``membrane metrics list`` parses scrapes with its parser: the wire format is
theirs, not a hand-written one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Family(Protocol):
    name: str
    help: str
    type: str
    label_names: tuple[str, ...]
    buckets: tuple[float, ...]
    values: dict[tuple[str, ...], float]
    hist: dict[tuple[str, ...], list[float]]


def _metric(fam: Family) -> Metric:
    labels = list(fam.label_names)
    if fam.type == "counter":
        counter = CounterMetricFamily(fam.name, fam.help, labels=labels)
        for key, value in sorted(fam.values.items()):
            counter.add_metric(list(key), value)
        return counter
    if fam.type == "histogram":
        hist = HistogramMetricFamily(fam.name, fam.help, labels=labels)
        for key, row in sorted(fam.hist.items()):
            # row: the cumulative count of each bucket, then sum, then count (= the +Inf bucket)
            bounds = [floatToGoString(b) for b in fam.buckets] + ["+Inf"]
            counts = [*row[: len(fam.buckets)], row[-1]]
            hist.add_metric(list(key), list(zip(bounds, counts, strict=True)), sum_value=row[-2])
        return hist
    gauge = GaugeMetricFamily(fam.name, fam.help, labels=labels)
    for key, value in sorted(fam.values.items()):
        gauge.add_metric(list(key), value)
    return gauge


class _Families:
    """A prometheus_client collector over our families."""

    def __init__(self, families: Iterable[Family]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        for fam in self._families:
            yield _metric(fam)


def render(families: Iterable[Family]) -> str:
    """The text exposition (format 0.0.4) of ``families``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))  # type: ignore[arg-type]
    return generate_latest(registry).decode()


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """A scrape → ``[(sample name, labels, value)]``; raises ValueError on malformed text."""
    out: list[tuple[str, dict[str, str], float]] = []
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out.append((s.name, dict(s.labels), float(s.value)))
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ValueError(f"not the Prometheus text format: {exc}") from None
    return out

