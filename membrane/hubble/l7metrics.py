"""Hubble's HTTP metric handlers (reference §9.7): ``http`` (deprecated) and ``httpV2``.

``httpV2`` counts response flows: ``hubble_http_requests_total{method,protocol,status,reporter}`` and
``hubble_http_request_duration_seconds{method,reporter}`` (histogram of the response's latency);
``http`` counts requests (``hubble_http_requests_total{method,protocol,reporter}``), responses
(``hubble_http_responses_total{method,status,reporter}``) and the same histogram. ``reporter`` is
``server`` for flows the destination's (ingress) proxy saw, ``client`` for the source's (egress).
``labelsContext`` labels follow the handler's own. With both enabled only ``httpV2`` counts (Hubble
refuses the pair; the series would clash).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

HTTP_METRICS = ("http", "httpV2")
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _reporter(flow: Any) -> str:
    return {1: "server", 2: "client"}.get(flow.traffic_direction, "unknown")  # INGRESS=1, EGRESS=2


class HTTPMetrics:
    def __init__(self, registry: Any, options: Iterable[Any], context_value: Any) -> None:
        self._value = context_value
        # set by HubbleMetrics.process_l7_keyed: (family, label values, is a histogram) of each count
        self.recording: list[tuple[Any, tuple[str, ...], bool]] | None = None
        self._v1 = self._v2 = None
        options = [o for o in options if o.name in HTTP_METRICS]
        if any(o.name == "httpV2" for o in options):  # Hubble does not run both: httpV2 wins
            options = [o for o in options if o.name == "httpV2"][:1]
        for option in options:
            ctx = option.labels_context
            duration = registry.histogram("hubble_http_request_duration_seconds",
                                          "Quantiles of HTTP request duration in seconds", ["method", "reporter", *ctx],
                                          _BUCKETS)
            if option.name == "httpV2":
                requests = registry.counter("hubble_http_requests_total", "Count of HTTP requests",
                                            ["method", "protocol", "status", "reporter", *ctx])
                self._v2 = (requests, duration, ctx)
            else:
                requests = registry.counter("hubble_http_requests_total", "Count of HTTP requests",
                                            ["method", "protocol", "reporter", *ctx])
                responses = registry.counter("hubble_http_responses_total", "Count of HTTP responses",
                                             ["method", "status", "reporter", *ctx])
                self._v1 = (requests, responses, duration, ctx)

    def process(self, flow: Any) -> None:
        if flow.event_type.type != 129 or not flow.HasField("l7") or flow.l7.WhichOneof("record") != "http":
            return
        h, reporter = flow.l7.http, _reporter(flow)
        response = flow.l7.type == 2  # RESPONSE
        if self._v2 is not None and response:
            requests, duration, ctx = self._v2
            extra = {n: self._value(flow, n) for n in ctx}
            self._inc(requests, {"method": h.method, "protocol": h.protocol, "status": str(h.code),
                                 "reporter": reporter, **extra})
            self._observe(duration, {"method": h.method, "reporter": reporter, **extra}, flow.l7.latency_ns / 1e9)
        if self._v1 is not None:
            requests, responses, duration, ctx = self._v1
            extra = {n: self._value(flow, n) for n in ctx}
            if response:
                self._inc(responses, {"method": h.method, "status": str(h.code), "reporter": reporter, **extra})
                self._observe(duration, {"method": h.method, "reporter": reporter, **extra},
                              flow.l7.latency_ns / 1e9)
            else:
                self._inc(requests, {"method": h.method, "protocol": h.protocol, "reporter": reporter, **extra})

    def _inc(self, family: Any, labels: dict[str, str]) -> None:
        values = family.key(labels)
        family.values[values] = family.values.get(values, 0.0) + 1.0
        if self.recording is not None:
            self.recording.append((family, values, False))

    def _observe(self, family: Any, labels: dict[str, str], seconds: float) -> None:
        values = family.key(labels)
        family.observe_values(values, seconds)
        if self.recording is not None:
            self.recording.append((family, values, True))
