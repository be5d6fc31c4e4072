"""Lazy L7 flows (membrane/hubble/l7lazy.py): what Hubble shows is what eager building showed."""

from __future__ import annotations

import time
from typing import Any

import pytest

from membrane.hubble.events import EndpointInfo
from membrane.hubble.l7flow import DROPPED, FORWARDED, REQUEST, RESPONSE, L7Record, l7_flow
from membrane.hubble.l7lazy import L7Flows
from membrane.hubble.lazyflow import LazyFlow
from membrane.hubble.metrics import HubbleMetrics, Registry
from membrane.hubble.ring import FlowRing

PODS = {"10.0.1.2": "tiefighter", "10.0.1.3": "deathstar", "10.0.2.9": "xwing"}


def lookup(ip: str) -> EndpointInfo | None:
    name = PODS.get(ip)
    if name is None:
        return None
    return EndpointInfo(identity=300, namespace="empire", pod_name=name, labels=(f"k8s:app={name}",),
                        workloads=((name, "Pod"),))


def http(kind: str, verdict: str, src: tuple[str, int], method: str = "GET", code: int = 200,
         latency_ns: int = 0, ingress: bool = True) -> L7Record:
    info: dict[str, Any] = {"method": method, "url": f"http://deathstar/v1/{method.lower()}", "protocol": "HTTP/1.1",
                            "headers": [("Host", "deathstar")]}
    if kind == RESPONSE:
        info["code"] = code
    return L7Record("http", kind, verdict, src, ("10.0.1.3", 80), 258, 259, ingress, latency_ns=latency_ns, http=info)


# connection -> its records: keep-alive repeats, two connections from one pod, another pod, a denial,
# an egress (client-side) redirect, and a DNS record (counted whole)
CONNECTIONS = [
    [http(REQUEST, FORWARDED, ("10.0.1.2", 40000)), http(RESPONSE, FORWARDED, ("10.0.1.2", 40000), latency_ns=2_000_000),
     http(REQUEST, FORWARDED, ("10.0.1.2", 40000)), http(RESPONSE, FORWARDED, ("10.0.1.2", 40000), latency_ns=40_000_000),
     http(REQUEST, DROPPED, ("10.0.1.2", 40000), method="PUT")],
    [http(REQUEST, FORWARDED, ("10.0.1.2", 40001), method="POST"),
     http(RESPONSE, FORWARDED, ("10.0.1.2", 40001), method="POST", code=503, latency_ns=700_000_000)],
    [http(REQUEST, FORWARDED, ("10.0.2.9", 50000)), http(RESPONSE, FORWARDED, ("10.0.2.9", 50000), latency_ns=1_000),
     http(REQUEST, FORWARDED, ("10.0.2.9", 50000), ingress=False),
     http(RESPONSE, FORWARDED, ("10.0.2.9", 50000), latency_ns=3_000_000, ingress=False)],
    [L7Record("dns", REQUEST, DROPPED, ("10.0.1.2", 33333), ("10.96.0.10", 53), 258, 2, False,
              dns={"query": "ipinfo.io.", "qtypes": ["A"]}, summary="Query ipinfo.io. A")],
]
METRICS = ["flow:labelsContext=source_pod,destination_namespace", "drop", "tcp", "port-distribution", "icmp",
           "dns", "httpV2:labelsContext=source_pod,traffic_direction"]


def lazy_run(metrics: list[str], connections: list[list[L7Record]] = CONNECTIONS,
             look: Any = lookup) -> tuple[FlowRing, Registry, list[LazyFlow]]:
    ring, registry = FlowRing(), Registry()
    hubble = HubbleMetrics(registry, metrics)
    entries: list[LazyFlow] = []

    def sink(entry: LazyFlow, key: Any, seconds: float) -> None:  # as proxy_sync.hubble_sink
        entries.append(entry)
        ring.append(entry)
        if key is None:
            hubble.process(entry.flow())
        else:
            hubble.process_l7_keyed(key, entry.flow, seconds)

    flows = L7Flows("k8s-w1", look, sink)
    for records in connections:
        emit = flows.connection()
        for rec in records:
            emit(rec)
    return ring, registry, entries


def eager_run(metrics: list[str]) -> tuple[list[Any], Registry]:
    registry = Registry()
    hubble = HubbleMetrics(registry, metrics)
    out = []
    for records in CONNECTIONS:
        for rec in records:
            flow = l7_flow(rec, lookup, "k8s-w1")
            hubble.process(flow)
            out.append(flow)
    return out, registry


@pytest.mark.parametrize("metrics", [METRICS, ["flow", "port-distribution", "http:labelsContext=destination_pod"]])
def test_metrics_are_those_of_flows_built_one_by_one(metrics: list[str]) -> None:
    _, lazy, _ = lazy_run(metrics)
    _, eager = eager_run(metrics)
    text = lazy.exposition()
    assert text == eager.exposition()
    assert 'subtype="HTTP",type="L7",verdict="FORWARDED"} ' in text
    if "httpV2" in metrics[-1]:  # the per-request latencies, not the first one repeated
        assert ('hubble_http_request_duration_seconds_sum{method="GET",reporter="server",source_pod="deathstar"'
                ',traffic_direction="ingress"} 0.042001') in text
        assert 'hubble_http_requests_total{method="POST",protocol="HTTP/1.1",reporter="server"' in text


def test_ring_flows_equal_the_eager_ones_but_for_uuid_and_time() -> None:
    before = time.time_ns()
    ring, _, _ = lazy_run(METRICS)
    after = time.time_ns()
    eager, _ = eager_run(METRICS)
    flows, _ = ring.snapshot()
    assert len(flows) == len(eager) == sum(map(len, CONNECTIONS))
    uuids = set()
    for lazy_flow, eager_flow in zip(flows, eager, strict=True):
        assert before <= lazy_flow.time.ToNanoseconds() <= after  # the time of the record, not of the read
        uuids.add(lazy_flow.uuid)
        lazy_flow.ClearField("uuid"), lazy_flow.ClearField("time")
        eager_flow.ClearField("uuid"), eager_flow.ClearField("time")
        assert lazy_flow == eager_flow
    assert len(uuids) == len(flows)


def test_only_the_first_record_of_a_key_is_built_until_read() -> None:
    keepalive = [[http(kind, FORWARDED, ("10.0.1.2", 40000), latency_ns=1_000_000) for _ in range(50)
                  for kind in (REQUEST, RESPONSE)]]
    ring, registry, entries = lazy_run(METRICS, keepalive)
    assert sum(e.built for e in entries) == 2  # one request, one response: the metrics' templates
    assert registry.exposition().count("} 50.0") >= 2  # yet 50 of each counted
    ring.query(3)  # a reader builds what it reads, and only that
    assert sum(e.built for e in entries) == 5  # the last three (none of them a template)


def test_ends_are_looked_up_once_per_connection_and_kept() -> None:
    asked: list[str] = []
    names = dict(PODS)

    def changing(ip: str) -> EndpointInfo | None:
        asked.append(ip)
        name = names.get(ip)
        return None if name is None else EndpointInfo(identity=300, namespace="empire", pod_name=name)

    ring, _, entries = lazy_run(["flow"], CONNECTIONS[:1], changing)
    assert sorted(asked) == ["10.0.1.2", "10.0.1.3"]
    names["10.0.1.2"] = "renamed"  # a later answer does not rewrite flows already taken
    flows, _ = ring.snapshot()
    assert {f.source.pod_name for f in flows if not f.is_reply.value} == {"tiefighter"}


def test_a_failing_lookup_loses_the_flow_not_the_request() -> None:
    def broken(_ip: str) -> EndpointInfo:
        raise RuntimeError("index gone")

    ring, _, _ = lazy_run(["flow"], CONNECTIONS[:1], broken)  # no exception reaches the proxy
    assert len(ring) == 0


def test_a_record_that_cannot_be_built_still_gives_the_reader_a_flow() -> None:
    bad = L7Record("http", RESPONSE, FORWARDED, ("10.0.1.2", 1), ("10.0.1.3", 80), 1, 2, True,
                   http={"method": "GET", "code": "not-a-number"})
    ring, _, _ = lazy_run(["flow"], [[bad]])
    flows, _ = ring.snapshot()
    assert "not decoded" in flows[0].Summary and flows[0].time.ToNanoseconds() > 0


def test_a_flow_counted_from_another_thread_stays_out_of_a_keys_record() -> None:
    """The proxies' worker threads and the event reader count at once: while the first flow of a key
    is being recorded, another thread's flow must neither be lost nor land in that key's record."""
    import threading

    hubble = HubbleMetrics(Registry(), ["flow"])
    l7 = l7_flow(CONNECTIONS[0][0], lookup, "k8s-w1")
    other = l7_flow(CONNECTIONS[3][0], lookup, "k8s-w1")  # a DNS flow: another label set
    worker = threading.Thread(target=hubble.process, args=(other,))

    class Slow:  # the first field read hands the GIL to the other thread, mid-recording
        def __init__(self) -> None:
            self.waited = False

        def __getattr__(self, name: str) -> Any:
            if not self.waited:
                self.waited = True
                worker.start()
                time.sleep(0.05)
            return getattr(l7, name)

    hubble.process_l7_keyed("k", Slow, 0.0)
    worker.join()
    hubble.process_l7_keyed("k", Slow, 0.0)  # replays the record of "k"
    family = next(f for _, f, _ in hubble._handlers)
    counts = {values[0]: n for values, n in family.values.items()}
    assert counts == {"HTTP": 2.0, "DNS": 1.0}
