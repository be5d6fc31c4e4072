"""Event decode on one core, without a lab: ``python -m bench.events_decode [--seconds S] [--profile]``.

Feeds ring-buffer records shaped like a TCP_CRR flood (per connection: the client's SYN, SYN-ACK, ACK,
FIN and RST traces at from-endpoint and to-endpoint, and the server's ingress policy verdict, fresh
source ports every connection) through the agent's real pipeline (``FlowPipeline``'s record handler:
decode → flow ring → the default Hubble metrics, the server a Service's backend) and prints events/s on this core. The pod and
ipcache lookups are in memory here (the agent's ipcache lookup is a BPF map syscall), so this is an
upper bound for the agent: ``python -m bench events`` measures the real one under a flood.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import struct
import sys
import time
from typing import Any

from membrane.agent.flows import FlowPipeline, PodIndex
from membrane.agent.observability import DEFAULT_HUBBLE_METRICS
from membrane.datapath.maps.events import DIRECTION_EGRESS, DIRECTION_INGRESS, EVENT_CAPTURE_LEN, HEADER
from membrane.hubble.metrics import HubbleMetrics, Registry
from membrane.hubble.ring import FlowRing
from membrane.hubble.services import ServiceAddress, ServiceIndex
from membrane.model import datapath_codes as codes

CLIENT, SERVER = "10.200.0.10", "10.200.0.11"
IDENTITIES = {CLIENT: 1001, SERVER: 1002}


class _Pods:
    """The two pods of the flood, as the pod mirror would hand them to PodIndex."""

    class _KV:
        def __init__(self, value: str) -> None:
            self.value = value

    def __init__(self) -> None:
        self._pods = [self._KV(json.dumps({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
            "status": {"podIP": ip}})) for name, ip in (("bench-cli", CLIENT), ("bench-srv", SERVER))]

    def items(self) -> list[Any]:
        return self._pods

    def subscribe(self, _callback: Any) -> None:
        pass


def _frame(src: str, dst: str, sport: int, dport: int, flags: int) -> bytes:
    eth = bytes.fromhex("0e000000000b0a000000000a0800")
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0,
                     bytes(int(x) for x in src.split(".")), bytes(int(x) for x in dst.split(".")))
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 65535, 0, 0)
    return eth + ip + tcp


def _record(kind: int, subtype: int, frame: bytes, *, reason: int, src: int, dst: int, direction: int,
            ep: int, action: int = 0, match: int = 0) -> bytes:
    dport = struct.unpack_from("!H", frame, 36)[0]  # the datapath writes the packet's (a reply's: the client's)
    header = HEADER.pack(kind, subtype, ep, 0, 0, reason, time.monotonic_ns(), 7, len(frame), len(frame),
                         src, dst, direction, match, action, 6, dport, 0, 0)
    return header + frame + bytes(EVENT_CAPTURE_LEN - len(frame))


def crr_records(connections: int) -> list[bytes]:
    """The events of ``connections`` short TCP connections between the two pods (same node)."""
    syn, ack, fin, rst = 0x02, 0x10, 0x01, 0x04
    c, s = IDENTITIES[CLIENT], IDENTITIES[SERVER]
    out = []
    for i in range(connections):
        sport = 1024 + i % 64000
        fwd = [(syn, codes.TRACE_REASON_NEW), (ack, codes.TRACE_REASON_ESTABLISHED),
               (fin | ack, codes.TRACE_REASON_ESTABLISHED)]
        rev = [(syn | ack, codes.TRACE_REASON_REPLY), (fin | ack, codes.TRACE_REASON_REPLY)]
        for flags, reason in fwd:
            frame = _frame(CLIENT, SERVER, sport, 8080, flags)
            out.append(_record(codes.EVENT_TRACE, codes.TRACE_FROM_LXC, frame, reason=reason, src=c, dst=s,
                               direction=DIRECTION_EGRESS, ep=11))
            if flags == syn:
                out.append(_record(codes.EVENT_POLICY_VERDICT, 0, frame, reason=reason, src=c, dst=s,
                                   direction=DIRECTION_INGRESS, ep=12, action=codes.POLICY_ACTION_ALLOW,
                                   match=codes.POLICY_MATCH_L3_L4))
            out.append(_record(codes.EVENT_TRACE, codes.TRACE_TO_LXC, frame, reason=reason, src=c, dst=s,
                               direction=DIRECTION_INGRESS, ep=12))
        for flags, reason in rev:
            frame = _frame(SERVER, CLIENT, 8080, sport, flags)
            out.append(_record(codes.EVENT_TRACE, codes.TRACE_FROM_LXC, frame, reason=reason, src=s, dst=c,
                               direction=DIRECTION_EGRESS, ep=12))
            out.append(_record(codes.EVENT_TRACE, codes.TRACE_TO_LXC, frame, reason=reason, src=s, dst=c,
                               direction=DIRECTION_INGRESS, ep=11))
        out.append(_record(codes.EVENT_TRACE, codes.TRACE_FROM_LXC, _frame(CLIENT, SERVER, sport, 8080, rst),
                           reason=codes.TRACE_REASON_ESTABLISHED, src=c, dst=s, direction=DIRECTION_EGRESS,
                           ep=11))
    return out


def pipeline() -> tuple[FlowPipeline, FlowRing]:
    ring = FlowRing(4095)
    metrics = HubbleMetrics(Registry(), list(DEFAULT_HUBBLE_METRICS))
    index = PodIndex(_Pods(), lambda ip: IDENTITIES.get(ip, 2), "default")  # type: ignore[arg-type]
    services = ServiceIndex([ServiceAddress("default/bench-srv", "10.96.0.10", 8080, "TCP", ((SERVER, 8080),))])
    return FlowPipeline("bench-node", "/nonexistent", ring, index.lookup, metrics.process,
                        lookup_service=services.lookup, count_keyed=metrics.process_keyed), ring


def measure(seconds: float, records: list[bytes], observed: bool = False, batch: int = 0) -> float:
    """Events per CPU-second (this thread's) through the pipeline's record handler, for about
    ``seconds`` of wall clock; ``observed``: a client follows every flow (``observe -f``), so each one
    is built; ``batch``: records per wake-up of the reader (0: all of them)."""
    pipe, ring = pipeline()
    chunks = [records[i : i + batch] for i in range(0, len(records), batch)] if batch else [records]

    done, cursor, start, cpu = 0, 0, time.perf_counter(), time.thread_time()
    while time.perf_counter() - start < seconds:
        for chunk in chunks:
            pipe.monitor.feed(chunk)
            if observed:  # after each batch: the ring holds fewer flows than the whole mix
                cursor = ring.read_after(cursor).cursor
        done += len(records)
    elapsed = time.thread_time() - cpu  # CPU time: what other jobs on the machine take does not count
    assert ring.seen == done, f"{ring.seen} flows for {done} events"
    return done / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile one run, print the top 25")
    parser.add_argument("--observed", action="store_true", help="a client follows every flow: all are built")
    parser.add_argument("--batch", type=int, default=0, help="records per reader wake-up (default: 200 connections' worth)")
    parser.add_argument("--connections", type=int, default=8000,
                        help="connections in the mix, each from its own port (more than the metrics and template "
                             "caches hold by default, as in a flood)")
    args = parser.parse_args(argv)
    records = crr_records(args.connections)
    batch = args.batch or len(records) * 200 // args.connections
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(measure, args.seconds, records, args.observed, batch)
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return 0
    rates = sorted(measure(args.seconds, records, args.observed, batch) for _ in range(args.runs))
    what = "every flow observed" if args.observed else "nobody observing"
    print(f"events/s/core ({what}): median {rates[len(rates) // 2]:,.0f} "
          f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
