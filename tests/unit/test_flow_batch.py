"""Batch decoding into lazy flows (membrane.agent.flow_batch) against the eager path it replaces.

Records are packed by hand with the C layout (tests/unit/test_events_decode.py's HEADER); every lazy
flow must equal the flow the eager path (decode → to_flow_event → flow_from_event) builds from the
same record and the same agent answers, and keyed metrics must count what process(flow) counts.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from membrane.agent.flow_batch import BatchDecoder
from membrane.agent.flows import to_flow_event
from membrane.datapath.maps import events as dpev
from membrane.datapath.monitor import EventMonitor
from membrane.hubble.events import EndpointInfo, PolicyName, PolicyQuestion, flow_from_event
from membrane.hubble.lazyflow import LazyFlow
from membrane.hubble.metrics import HubbleMetrics, Registry
from membrane.hubble.proto.flow import flow_pb2
from membrane.hubble.ring import FlowRing
from membrane.model import datapath_codes as codes
from tests.unit.test_events_decode import ICMP_ECHO_FRAME, record

A, B, C = "10.200.0.10", "10.200.0.11", "192.0.2.9"
OFFSET = 1_700_000_000_000_000_000
SYN, ACK, FIN, RST = 0x02, 0x10, 0x01, 0x04
PODS = {
    A: EndpointInfo(identity=1001, namespace="default", pod_name="a", labels=("k8s:app=a",), endpoint_id=11,
                    workloads=(("a", "Deployment"),)),
    B: EndpointInfo(identity=1002, namespace="prod", pod_name="b", labels=("k8s:app=b",), endpoint_id=12),
}
SERVICES = {(B, 8080, "TCP"): ("prod", "web"), (B, 53, "UDP"): ("kube-system", "dns")}
METRICS = ["flow:labelsContext=source_namespace,destination_pod,traffic_direction", "drop:labelsContext=source_ip",
           "tcp", "port-distribution:labelsContext=destination_namespace", "icmp"]


def ip4(src: str, dst: str, proto: int, payload: bytes, frag: int = 0x4000) -> bytes:
    def addr(a: str) -> bytes:
        return bytes(int(x) for x in a.split("."))

    return (bytes.fromhex("0e000000000b0a000000000a0800")
            + struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, frag, 64, proto, 0, addr(src), addr(dst))
            + payload)


def tcp(src: str, dst: str, sport: int, dport: int, flags: int) -> bytes:
    return ip4(src, dst, 6, struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 65535, 0, 0))


def udp(src: str, dst: str, sport: int, dport: int) -> bytes:
    return ip4(src, dst, 17, struct.pack("!HHHH", sport, dport, 8, 0))


IPV6_FRAME = bytes.fromhex("0e000000000b0a00000000" "0a86dd" "6000000000083a40") + bytes(15) + b"\x01" + bytes(
    15) + b"\x02" + bytes.fromhex("8000000000010001")
VLAN_FRAME = bytes.fromhex("0e000000000b0a000000000a" "81000005") + tcp(A, B, 1, 2, SYN)[12:]


def mixed() -> list[bytes]:
    """Traces both ways with several source ports, UDP, ICMP, a fragment, drops (one for a spoofed
    source), policy verdicts allowed and denied, and frames only the eager path takes."""
    out = []
    for sport in (40000, 40001, 40002):
        for flags, reason in ((SYN, codes.TRACE_REASON_NEW), (ACK, codes.TRACE_REASON_ESTABLISHED),
                              (FIN | ACK, codes.TRACE_REASON_ESTABLISHED)):
            out.append(record(codes.EVENT_TRACE, codes.TRACE_FROM_LXC, packet=tcp(A, B, sport, 8080, flags),
                              trace_reason=reason, protocol=6, ep_id=11))
        out.append(record(codes.EVENT_TRACE, codes.TRACE_TO_LXC, packet=tcp(B, A, 8080, sport, SYN | ACK),
                          trace_reason=codes.TRACE_REASON_REPLY, protocol=6, ep_id=11,
                          direction=dpev.DIRECTION_INGRESS))
        out.append(record(codes.EVENT_POLICY_VERDICT, 0, packet=tcp(A, B, sport, 8080, SYN), protocol=6, ep_id=12,
                          direction=dpev.DIRECTION_INGRESS, action=codes.POLICY_ACTION_ALLOW,
                          match_type=codes.POLICY_MATCH_L3_L4, dport=8080))
    out += [
        record(codes.EVENT_TRACE, codes.TRACE_TO_STACK, packet=udp(A, B, 5353, 53), protocol=17),
        record(codes.EVENT_TRACE, codes.TRACE_TO_STACK, packet=udp(A, B, 5353, 53),
               trace_reason=codes.TRACE_REASON_NEW | codes.TRACE_REASON_ENCRYPT_MASK, protocol=17),
        record(codes.EVENT_TRACE, codes.TRACE_FROM_LXC, packet=ICMP_ECHO_FRAME, protocol=1),
        record(codes.EVENT_TRACE, codes.TRACE_FROM_LXC, packet=ip4(A, C, 17, bytes(8), frag=0x2001), protocol=17),
        record(codes.EVENT_TRACE, codes.TRACE_FROM_LXC, packet=tcp(A, B, 1, 2, RST)[:40], protocol=6),
        record(codes.EVENT_DROP, codes.DROP_POLICY, drop_reason=codes.DROP_POLICY, packet=tcp(C, B, 999, 8080, SYN),
               trace_reason=codes.TRACE_REASON_UNKNOWN, protocol=6, ep_id=12, direction=dpev.DIRECTION_INGRESS),
        record(codes.EVENT_DROP, codes.DROP_INVALID_SIP, drop_reason=codes.DROP_INVALID_SIP,
               packet=tcp(C, B, 999, 8080, SYN), protocol=6, ep_id=11),
        record(codes.EVENT_POLICY_VERDICT, 0, packet=tcp(C, B, 999, 8080, SYN), protocol=6, ep_id=12,
               direction=dpev.DIRECTION_INGRESS, action=codes.POLICY_ACTION_DENY, drop_reason=codes.DROP_POLICY,
               match_type=codes.POLICY_MATCH_NONE, dport=8080, src=2),
        record(codes.EVENT_POLICY_VERDICT, 0, packet=ICMP_ECHO_FRAME, protocol=1, ep_id=12,
               direction=dpev.DIRECTION_EGRESS, action=codes.POLICY_ACTION_ALLOW),
        record(codes.EVENT_TRACE, codes.TRACE_FROM_LXC, packet=IPV6_FRAME, protocol=58),
        record(codes.EVENT_TRACE, codes.TRACE_FROM_LXC, packet=VLAN_FRAME, protocol=6),
        record(codes.EVENT_TRACE, codes.TRACE_FROM_LXC, packet=b"\x01" * 20, protocol=0),
        record(codes.EVENT_DEBUG, 0),
    ]
    return out


def lookup(ip: str) -> EndpointInfo | None:
    return PODS.get(ip) or (EndpointInfo(identity=2) if ip == C else None)


def attribute(q: PolicyQuestion) -> tuple[list[PolicyName], list[str]]:
    return [PolicyName(f"p-{q.endpoint_id}-{q.port}-{q.protocol}-{q.peer_identity}-{q.denied}", "prod",
                       "CiliumNetworkPolicy")], ["log"]


AGENT: dict[str, Callable] = {  # type: ignore[type-arg]
    "lookup_endpoint": lambda ep: PODS[A] if ep == 11 else None,
    "lookup_service": lambda ip, port, proto: SERVICES.get((ip, port, proto)),
    "attribute_policy": attribute,
}


def eager(raw: bytes) -> flow_pb2.Flow | None:
    fev = to_flow_event(dpev.decode(raw, OFFSET), "n1")
    return None if fev is None else flow_from_event(fev, lookup, **AGENT)


def without_uuid(f: flow_pb2.Flow) -> flow_pb2.Flow:
    g = flow_pb2.Flow()
    g.CopyFrom(f)
    g.uuid = ""
    return g


def decoder(**kw: object) -> BatchDecoder:
    return BatchDecoder("n1", OFFSET, to_flow_event, lookup, **AGENT, **kw)  # type: ignore[arg-type]


def test_lazy_flows_equal_the_eager_ones_and_are_built_only_when_read() -> None:
    records = mixed()
    entries, bad = decoder().decode(records)
    assert bad == 0
    expected = [f for f in map(eager, records) if f is not None]
    assert len(entries) == len(expected) == len(records) - 1  # the debug event makes no flow
    lazy = [e for e in entries if isinstance(e, LazyFlow)]
    assert len(lazy) == len(records) - 4  # IPv6, VLAN, no IP and debug: eager (a truncated TCP header: lazy)
    assert not any(e.built for e in lazy)
    built = [e.flow() if isinstance(e, LazyFlow) else e for e in entries]
    assert [without_uuid(f) for f in built] == [without_uuid(f) for f in expected]
    assert built[3].source_service.name == "web" and built[0].destination_service.name == "web"
    assert built[4].ingress_allowed_by[0].name == "p-12-8080-6-1001-False" and built[4].policy_log == ["log"]
    assert len({f.uuid for f in built}) == len(built)


def test_a_lazy_flow_is_built_once_and_keeps_its_uuid() -> None:
    (entry,), _ = decoder().decode(mixed()[:1])
    assert isinstance(entry, LazyFlow)
    first = entry.flow()
    assert entry.flow() is first and entry.built
    assert first.uuid and first.Summary == "TCP Flags: SYN"


def test_the_answers_are_those_of_the_moment_the_event_arrived() -> None:
    pods = dict(PODS)
    dec = BatchDecoder("n1", OFFSET, to_flow_event, pods.get)
    (entry,), _ = dec.decode(mixed()[:1])
    pods[A] = EndpointInfo(identity=9999, namespace="moved", pod_name="other")
    assert entry.flow().source.pod_name == "a"  # type: ignore[union-attr]


def test_a_short_record_counts_as_bad_and_the_rest_still_decode() -> None:
    entries, bad = decoder().decode([b"\x04" * 20, mixed()[0]])
    assert bad == 1 and len(entries) == 1


@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_keyed_metrics_count_what_processing_every_flow_counts(batch: int) -> None:
    records = mixed() * 3
    reference = HubbleMetrics(Registry(), METRICS)
    for f in filter(None, map(eager, records)):
        reference.process(f)
    keyed = HubbleMetrics(Registry(), METRICS)
    dec = decoder(on_flow=keyed.process, count_keyed=keyed.process_keyed)
    for i in range(0, len(records), batch):
        dec.decode(records[i : i + batch])
    assert _values(keyed) == _values(reference)
    assert _values(reference)["hubble_port_distribution_total"]  # the port label is exercised


def _values(m: HubbleMetrics) -> dict[str, dict[tuple[str, ...], float]]:
    return {family.name: dict(family.values) for _h, family, _c in m._handlers}  # noqa: SLF001


def test_keyed_metrics_build_one_flow_per_key() -> None:
    metrics = HubbleMetrics(Registry(), METRICS)
    builds = []

    def build() -> flow_pb2.Flow:
        builds.append(1)
        return eager(mixed()[0])  # type: ignore[return-value]

    metrics.process_keyed("k", build, 3)
    metrics.process_keyed("k", build, 2)
    assert len(builds) == 1
    flows = _values(metrics)["hubble_flows_processed_total"]
    assert list(flows.values()) == [5.0]


def test_the_ring_hands_out_built_flows_for_lazy_entries() -> None:
    ring = FlowRing(capacity=4)
    entries, _ = decoder().decode(mixed()[:6])
    ring.extend(entries)
    assert ring.seen == 6 and len(ring) == 4
    assert not any(e.built for e in entries if isinstance(e, LazyFlow))
    flows, cursor = ring.query(2)
    assert all(isinstance(f, flow_pb2.Flow) for f in flows) and cursor == 6
    assert [f.uuid for f in flows] == [e.flow().uuid for e in entries[-2:]]  # type: ignore[union-attr]
    assert not entries[2].built  # type: ignore[union-attr]  (in the ring, not read yet)
    result = ring.read_after(3)
    assert result.lost == 0 and [f.uuid for f in result.flows] == [e.flow().uuid for e in entries[3:]]  # type: ignore[union-attr]


def test_the_monitor_counts_a_batch_handler_s_decode_errors() -> None:
    batches: list[list[bytes]] = []

    def on_records(records: list[bytes]) -> int:
        batches.append(records)
        return 1

    monitor = EventMonitor("/nonexistent", lambda _e: None, on_records=on_records)
    monitor.feed([b"a", b"b", b"c"])
    counters = monitor.counters()
    assert batches == [[b"a", b"b", b"c"]]
    assert (counters.delivered, counters.decode_errors, counters.handler_errors) == (2, 1, 0)


def test_a_failing_batch_handler_counts_handler_errors() -> None:
    def on_records(_records: list[bytes]) -> int:
        raise RuntimeError("bug")

    monitor = EventMonitor("/nonexistent", lambda _e: None, on_records=on_records)
    monitor.feed([b"a", b"b"])
    assert monitor.counters().handler_errors == 2


def test_flows_copied_from_an_earlier_one_get_their_own_time_ports_and_uuid() -> None:
    records = [record(codes.EVENT_TRACE, codes.TRACE_TO_LXC, packet=frame, ktime=ktime, protocol=proto, ep_id=12,
                      direction=dpev.DIRECTION_INGRESS)
               for ktime, frame, proto in ((5_000_000_001, tcp(A, B, 40000, 8080, SYN), 6),
                                           (7_123_456_789, tcp(A, B, 40001, 8080, SYN), 6),
                                           (8_000_000_000, tcp(A, B, 40002, 8081, SYN), 6),
                                           (9_000_000_000, udp(A, B, 5000, 53), 17),
                                           (9_500_000_000, udp(A, B, 5001, 54), 17))]
    dec = decoder()
    entries, _ = dec.decode(records)
    built = [e.flow() for e in entries]  # type: ignore[union-attr]
    # one per kind of flow: 8080 (Service web), 8081 (none), 53 (Service dns), 54 (none); 40001 is a copy
    assert len(dec._templates) == 4  # noqa: SLF001
    expected = [eager(r) for r in records]
    assert [without_uuid(f) for f in built] == [without_uuid(f) for f in expected]  # type: ignore[arg-type]
    assert [f.l4.TCP.source_port for f in built[:3]] == [40000, 40001, 40002]
    assert [f.l4.UDP.destination_port for f in built[3:]] == [53, 54]
    assert built[1].time.ToNanoseconds() == OFFSET + 7_123_456_789
    assert len({f.uuid for f in built}) == 5


def test_endpoint_infos_with_list_fields_still_decode_and_count() -> None:
    def listy(ip: str) -> EndpointInfo | None:
        info = lookup(ip)
        return None if info is None else EndpointInfo(identity=info.identity, labels=list(info.labels))  # type: ignore[arg-type]

    metrics = HubbleMetrics(Registry(), METRICS)
    dec = BatchDecoder("n1", OFFSET, to_flow_event, listy, count_keyed=metrics.process_keyed)
    entries, bad = dec.decode(mixed()[:3] * 2)
    assert bad == 0 and len(entries) == 6
    assert [e.flow().source.labels for e in entries] == [["k8s:app=a"]] * 6  # type: ignore[union-attr]
    assert sum(_values(metrics)["hubble_flows_processed_total"].values()) == 6


def test_replies_to_fresh_client_ports_share_one_metrics_key_and_one_template() -> None:
    # the datapath writes the packet's destination port into the header: a reply's is the client's
    # ephemeral port, new for every connection of a CRR flood; no flow field shows it
    records = [record(codes.EVENT_TRACE, codes.TRACE_TO_LXC, packet=tcp(B, A, 8080, sport, SYN | ACK),
                      trace_reason=codes.TRACE_REASON_REPLY, protocol=6, ep_id=11,
                      direction=dpev.DIRECTION_INGRESS, dport=sport)
               for sport in range(40000, 40010)]
    metrics = HubbleMetrics(Registry(), METRICS)
    builds: list[int] = []

    def count_keyed(key: object, build: Callable[[], flow_pb2.Flow], n: int) -> None:
        def counted() -> flow_pb2.Flow:
            builds.append(n)
            return build()
        metrics.process_keyed(key, counted, n)  # type: ignore[arg-type]

    dec = decoder(count_keyed=count_keyed)
    entries, _ = dec.decode(records[:5])
    dec.decode(records[5:])
    assert builds == [5]  # one flow built for the metrics of all ten
    assert sum(_values(metrics)["hubble_flows_processed_total"].values()) == 10
    assert [without_uuid(e.flow()) for e in entries] == [without_uuid(eager(r)) for r in records[:5]]  # type: ignore[union-attr,arg-type]
    assert len(dec._templates) == 1  # noqa: SLF001


def test_a_record_ending_inside_the_ip_header_takes_the_eager_path() -> None:
    full = record(codes.EVENT_TRACE, codes.TRACE_TO_LXC, packet=tcp(A, B, 40000, 8080, SYN)[:20], protocol=6)
    short = full[: dpev.EVENT_HEADER_LEN + 20]  # what a shorter record of the ring would hold
    entries, bad = decoder().decode([short])
    assert bad == 0 and len(entries) == 1 and not isinstance(entries[0], LazyFlow)
    assert without_uuid(entries[0]) == without_uuid(eager(short))  # type: ignore[arg-type]
