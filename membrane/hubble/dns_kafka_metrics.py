"""Hubble's ``dns`` and ``kafka`` metric handlers (reference §9.7), fed by the proxies' L7 flows.

``dns``: a query flow counts in ``hubble_dns_queries_total{rcode,qtypes,ips_returned}`` with rcode ""
(``Policy denied`` when the proxy refused it); an answer in ``hubble_dns_responses_total`` with the
rcode's name (``No Error``, ``Non-Existent Domain`` …) and the number of addresses, and each record
type it carried in ``hubble_dns_response_types_total{type,qtypes}``. Options: ``query`` adds the query
name as a label, ``ignoreAAAA`` skips flows asking for AAAA. ``kafka``:
``hubble_kafka_requests_total{topic,api_key,error_code,reporter}`` and
``hubble_kafka_request_duration_seconds{topic,api_key,reporter}``. ``labelsContext`` labels follow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

DNS_KAFKA_METRICS = ("dns", "kafka")
RCODE_NAMES = {0: "No Error", 1: "Format Error", 2: "Server Failure", 3: "Non-Existent Domain",
               4: "Not Implemented", 5: "Query Refused"}
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ACCESS_LOG = 129
DROPPED = 2
RESPONSE = 2


def _reporter(flow: Any) -> str:
    return {1: "server", 2: "client"}.get(flow.traffic_direction, "unknown")  # INGRESS=1, EGRESS=2


class DNSKafkaMetrics:
    def __init__(self, registry: Any, options: Iterable[Any], context_value: Callable[[Any, str], str]) -> None:
        self._value = context_value
        self._dns: tuple[Any, Any, Any, tuple[str, ...], bool, bool] | None = None
        self._kafka: tuple[Any, Any, tuple[str, ...]] | None = None
        for option in options:
            ctx = option.labels_context
            opts = dict(option.options)
            if option.name == "dns" and self._dns is None:
                query = "query" in opts
                extra = ["query"] if query else []
                base = ["rcode", "qtypes", "ips_returned", *extra, *ctx]
                self._dns = (
                    registry.counter("hubble_dns_queries_total", "Number of DNS queries observed", base),
                    registry.counter("hubble_dns_responses_total", "Number of DNS responses observed", base),
                    registry.counter("hubble_dns_response_types_total", "Number of DNS response types",
                                     ["type", "qtypes", *extra, *ctx]),
                    ctx, query, "ignoreAAAA" in opts)
            elif option.name == "kafka" and self._kafka is None:
                self._kafka = (
                    registry.counter("hubble_kafka_requests_total", "Count of Kafka requests",
                                     ["topic", "api_key", "error_code", "reporter", *ctx]),
                    registry.histogram("hubble_kafka_request_duration_seconds",
                                       "Quantiles of Kafka request duration in seconds",
                                       ["topic", "api_key", "reporter", *ctx], _BUCKETS),
                    ctx)

    def process(self, flow: Any) -> None:
        if flow.event_type.type != ACCESS_LOG or not flow.HasField("l7"):
            return
        record = flow.l7.WhichOneof("record")
        if record == "dns" and self._dns is not None:
            self._count_dns(flow)
        elif record == "kafka" and self._kafka is not None:
            requests, duration, ctx = self._kafka
            k = flow.l7.kafka
            labels = {"topic": k.topic, "api_key": k.api_key, "reporter": _reporter(flow),
                      **{n: self._value(flow, n) for n in ctx}}
            requests.inc({**labels, "error_code": str(k.error_code)})
            duration.observe(labels, flow.l7.latency_ns / 1e9)

    def _count_dns(self, flow: Any) -> None:
        assert self._dns is not None
        queries, responses, types, ctx, query, ignore_aaaa = self._dns
        d = flow.l7.dns
        if ignore_aaaa and "AAAA" in d.qtypes:
            return
        qtypes = ",".join(d.qtypes)
        extra = {"query": d.query} if query else {}
        extra.update({n: self._value(flow, n) for n in ctx})
        if flow.l7.type == RESPONSE:
            responses.inc({"rcode": RCODE_NAMES.get(d.rcode, str(d.rcode)), "qtypes": qtypes,
                           "ips_returned": str(len(d.ips)), **extra})
            for rrtype in d.rrtypes:
                types.inc({"type": rrtype, "qtypes": qtypes, **extra})
        else:
            rcode = "Policy denied" if flow.verdict == DROPPED else ""
            queries.inc({"rcode": rcode, "qtypes": qtypes, "ips_returned": "0", **extra})
