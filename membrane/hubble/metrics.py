"""Prometheus metrics with Cilium's and Hubble's names: a small registry and its text exposition.

Pure: no I/O. :class:`Registry` holds metric families (counter, gauge, histogram) and renders the
Prometheus text format (``# HELP`` / ``# TYPE`` lines, escaped label values). Collectors registered with
:meth:`Registry.add_collector` run before every exposition, so the agent can refresh gauges from its
tables at scrape time. :class:`HubbleMetrics` counts flows like Hubble's metric handlers (``flow``,
``drop``, ``tcp``, ``port-distribution``, ``icmp``, configured like ``hubble.metrics.enabled`` with
``labelsContext``); :class:`AgentMetrics` holds the cilium-agent series of reference §10.
Flows are ``flow.Flow`` protobuf messages (Hubble's field names); enum names come from the descriptors.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from membrane.hubble import exposition
from membrane.hubble.dns_kafka_metrics import DNSKafkaMetrics
from membrane.hubble.l7metrics import HTTPMetrics
from membrane.hubble.packet import icmp_type_name
from membrane.model import datapath_codes as codes

LabelValues = tuple[str, ...]
MEMO_MAX = 16384  # HubbleMetrics.process_keyed remembers this many keys, then starts over
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


@dataclass
class MetricFamily:
    """One metric name with its label names; values keyed by the tuple of label values."""

    name: str
    help: str
    type: str
    label_names: LabelValues = ()
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    values: dict[LabelValues, float] = field(default_factory=dict)
    hist: dict[LabelValues, list[float]] = field(default_factory=dict)  # bucket counts..., sum, count

    def key(self, labels: Mapping[str, str] | Iterable[str]) -> LabelValues:
        if isinstance(labels, Mapping):
            return tuple(str(labels.get(n, "")) for n in self.label_names)
        values = tuple(str(v) for v in labels)
        if len(values) != len(self.label_names):
            raise ValueError(f"{self.name}: expected labels {self.label_names}, got {values}")
        return values

    def inc(self, labels: Mapping[str, str] | Iterable[str] = (), amount: float = 1.0) -> None:
        if self.type == "counter" and amount < 0:
            raise ValueError(f"{self.name}: counters only go up")
        k = self.key(labels)
        self.values[k] = self.values.get(k, 0.0) + amount

    def set(self, labels: Mapping[str, str] | Iterable[str], value: float) -> None:
        """Gauges; counters too when the source is an absolute counter (a BPF metrics map)."""
        self.values[self.key(labels)] = float(value)

    def observe(self, labels: Mapping[str, str] | Iterable[str], value: float) -> None:
        self.observe_values(self.key(labels), value)

    def observe_values(self, values: LabelValues, value: float) -> None:
        """``observe`` with the label values already in order (as ``key`` made them)."""
        row = self.hist.get(values)
        if row is None:
            row = self.hist[values] = [0.0] * (len(self.buckets) + 2)
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                row[i] += 1
        row[-2] += value
        row[-1] += 1

    def clear(self) -> None:
        self.values.clear()
        self.hist.clear()

    def get(self, labels: Mapping[str, str] | Iterable[str] = ()) -> float:
        return self.values.get(self.key(labels), 0.0)

    def samples(self) -> list[Sample]:
        out = []
        for k in sorted(self.values):
            out.append(Sample(self.name, tuple(zip(self.label_names, k, strict=True)), self.values[k]))
        for k in sorted(self.hist):
            row, base = self.hist[k], tuple(zip(self.label_names, k, strict=True))
            for bound, count in zip((*self.buckets, math.inf), (*row[:-2], row[-1]), strict=True):
                out.append(Sample(f"{self.name}_bucket", (*base, ("le", format_value(bound))), count))
            out.append(Sample(f"{self.name}_sum", base, row[-2]))
            out.append(Sample(f"{self.name}_count", base, row[-1]))
        return out


class Registry:
    """Metric families by name, rendered in registration order."""

    def __init__(self) -> None:
        self.families: dict[str, MetricFamily] = {}
        self.collectors: list[Callable[[], None]] = []

    def _add(self, family: MetricFamily) -> MetricFamily:
        existing = self.families.get(family.name)
        if existing is not None:
            if (existing.type, existing.label_names) != (family.type, family.label_names):
                raise ValueError(f"metric {family.name} already registered with other labels or type")
            return existing
        self.families[family.name] = family
        return family

    def counter(self, name: str, help: str, labels: Iterable[str] = ()) -> MetricFamily:
        return self._add(MetricFamily(name, help, "counter", tuple(labels)))

    def gauge(self, name: str, help: str, labels: Iterable[str] = ()) -> MetricFamily:
        return self._add(MetricFamily(name, help, "gauge", tuple(labels)))

    def histogram(
        self, name: str, help: str, labels: Iterable[str] = (), buckets: Iterable[float] = DEFAULT_BUCKETS
    ) -> MetricFamily:
        return self._add(MetricFamily(name, help, "histogram", tuple(labels), tuple(sorted(buckets))))

    def add_collector(self, collect: Callable[[], None]) -> None:
        """``collect()`` runs before each exposition to refresh values from live state."""
        self.collectors.append(collect)

    def collect(self) -> None:
        for collect in self.collectors:
            collect()

    def samples(self) -> list[Sample]:
        self.collect()
        return [s for fam in self.families.values() for s in fam.samples()]

    def exposition(self, prefix: str = "") -> str:
        """The Prometheus text format (version 0.0.4, rendered by prometheus-client), of the families named
        ``prefix…`` when given."""
        self.collect()
        return exposition.render(fam for name, fam in self.families.items() if name.startswith(prefix))


CONTENT_TYPE = exposition.CONTENT_TYPE

# ---- Hubble flow metrics ----------------------------------------------------------------------------------
HANDLERS = ("flow", "drop", "tcp", "port-distribution", "icmp", "http", "httpV2",  # http*: l7metrics.py
            "dns", "kafka")  # dns_kafka_metrics.py
NOT_YET = ("flows-to-world",)  # accepted, not counted yet
LABELS_CONTEXT = (
    "source_ip",
    "source_namespace",
    "source_pod",
    "source_workload",
    "source_workload_kind",
    "source_app",
    "destination_ip",
    "destination_namespace",
    "destination_pod",
    "destination_workload",
    "destination_workload_kind",
    "destination_app",
    "traffic_direction",
)
_TYPE_NAMES = {1: "Drop", 3: "Capture", 4: "Trace", 5: "PolicyVerdict", 129: "L7"}
TRACE_POINT_NAMES = tuple(codes.TRACE_POINT_NAMES[i] for i in range(len(codes.TRACE_POINT_NAMES)))
_L4_NAMES = {"TCP": "TCP", "UDP": "UDP", "ICMPv4": "ICMPv4", "ICMPv6": "ICMPv6", "SCTP": "SCTP"}
_L7_NAMES = {"dns": "DNS", "http": "HTTP", "kafka": "Kafka"}
_APP_LABELS = ("k8s:app.kubernetes.io/name", "k8s:k8s-app", "k8s:app")
_DROPPED = 2  # flow.Verdict DROPPED
_FORWARDED = (1, 5)  # flow.Verdict FORWARDED, REDIRECTED
_ENUM_NAMES: dict[tuple[str, str], dict[int, str]] = {}


def enum_name(message: Any, field_name: str) -> str:
    """The enum value name of ``message.<field_name>`` from the message descriptor (the number → name
    table is built once per field: this runs several times for every flow)."""
    value = getattr(message, field_name)
    key = (message.DESCRIPTOR.full_name, field_name)
    names = _ENUM_NAMES.get(key)
    if names is None:
        enum = message.DESCRIPTOR.fields_by_name[field_name].enum_type
        names = _ENUM_NAMES[key] = {v.number: v.name for v in enum.values}
    found = names.get(value)
    return found if found is not None else str(value)


def flow_protocol(flow: Any) -> str:
    """Hubble's ``FlowProtocol``: DNS/HTTP/Kafka for L7, TCP/UDP/ICMPv4/ICMPv6/SCTP for L3/L4 events."""
    kind = flow.event_type.type
    if kind == 129:
        record = flow.l7.WhichOneof("record") if flow.HasField("l7") else None
        return _L7_NAMES.get(record or "", "Unknown L7")
    if kind in (1, 3, 4, 5):
        l4 = flow.l4.WhichOneof("protocol") if flow.HasField("l4") else None
        return _L4_NAMES.get(l4 or "", "Unknown L4")
    return "Unknown flow"


def _endpoint_value(ep: Any, what: str) -> str:
    if what == "namespace":
        return ep.namespace
    if what == "pod":
        return ep.pod_name
    if what in ("workload", "workload_kind"):
        return (ep.workloads[0].name if what == "workload" else ep.workloads[0].kind) if ep.workloads else ""
    labels = {lab.partition("=")[0]: lab.partition("=")[2] for lab in ep.labels}
    return next((labels[k] for k in _APP_LABELS if k in labels), "")


def context_value(flow: Any, name: str) -> str:
    if name == "traffic_direction":
        direction = enum_name(flow, "traffic_direction")
        return direction.lower() if direction in ("INGRESS", "EGRESS") else "unknown"
    side, _, what = name.partition("_")
    if what == "ip":
        return flow.IP.source if side == "source" else flow.IP.destination
    return _endpoint_value(flow.source if side == "source" else flow.destination, what)


@dataclass(frozen=True)
class MetricOption:
    """One ``hubble.metrics.enabled`` entry, e.g. ``flow:labelsContext=source_namespace``."""

    name: str
    options: tuple[tuple[str, str], ...] = ()

    @property
    def labels_context(self) -> tuple[str, ...]:
        raw = dict(self.options).get("labelsContext", "")
        return tuple(x for x in raw.split(",") if x)


def parse_metric_options(enabled: str | Iterable[str]) -> list[MetricOption]:
    """A Helm list or a space-separated ``--hubble-metrics`` string → parsed and validated options."""
    items = enabled.split() if isinstance(enabled, str) else [x for e in enabled for x in e.split()]
    out = []
    for item in items:
        name, _, rest = item.partition(":")
        if name not in HANDLERS and name not in NOT_YET:
            raise ValueError(f"unknown Hubble metric {name!r} (known: {', '.join(HANDLERS + NOT_YET)})")
        opts = []
        for part in filter(None, rest.split(";")):
            key, _, value = part.partition("=")
            opts.append((key, value))
        option = MetricOption(name, tuple(opts))
        for label in option.labels_context:
            if label not in LABELS_CONTEXT:
                raise ValueError(f"{name}: unknown labelsContext label {label!r}")
        out.append(option)
    return out


class HubbleMetrics:
    """Hubble's flow metric handlers over one registry; ``process(flow)`` for every flow."""

    def __init__(self, registry: Registry, enabled: str | Iterable[str]) -> None:
        self.options = parse_metric_options(enabled)
        self.unsupported = [o.name for o in self.options if o.name in NOT_YET]
        self.lost_events = registry.counter("hubble_lost_events_total", "Number of lost events", ["source"])
        self._handlers: list[
            tuple[Callable[[Any, MetricFamily, tuple[str, ...]], None], MetricFamily, tuple[str, ...]]
        ] = []
        specs = {
            "flow": (
                "hubble_flows_processed_total",
                "Total number of flows processed",
                ["protocol", "type", "subtype", "verdict"],
                self._flow,
            ),
            "drop": ("hubble_drop_total", "Number of drops", ["reason", "protocol"], self._drop),
            "tcp": ("hubble_tcp_flags_total", "TCP flag occurrences", ["flag", "family"], self._tcp),
            "port-distribution": (
                "hubble_port_distribution_total",
                "Numbers of packets distributed by destination port",
                ["protocol", "port"],
                self._port,
            ),
            "icmp": ("hubble_icmp_total", "Number of ICMP messages", ["family", "type"], self._icmp),
        }
        for option in self.options:
            if option.name not in specs:
                continue
            name, help, labels, handler = specs[option.name]
            ctx = option.labels_context
            family = registry.counter(
                name, help, [*ctx, *labels] if option.name == "drop" else [*labels, *ctx]
            )
            self._handlers.append((handler, family, ctx))
        self._http = HTTPMetrics(registry, self.options, context_value)
        self._dns_kafka = DNSKafkaMetrics(registry, self.options, context_value)
        # process_keyed: key -> the (family, label values) the handlers counted for it
        self._memo: dict[Hashable, list[tuple[MetricFamily, LabelValues]]] = {}
        self._recording: list[tuple[MetricFamily, LabelValues]] | None = None
        # process_l7_keyed: key -> (what the flow handlers counted, what the HTTP handlers counted)
        self._memo_l7: dict[Hashable, tuple[list[tuple[MetricFamily, LabelValues]], list[Any]]] = {}
        # The proxies count from their own threads: whoever runs the handlers while a key's counts
        # are being recorded holds this, so no other flow's counts land in that record.
        self._lock = threading.Lock()

    def process(self, flow: Any) -> None:
        with self._lock:
            for handler, family, ctx in self._handlers:
                handler(flow, family, ctx)
            self._http.process(flow)
            self._dns_kafka.process(flow)

    def process_l7_keyed(self, key: Hashable, build: Callable[[], Any], seconds: float) -> None:
        """Count one HTTP L7 flow that ``key`` stands for without building it: ``key`` must determine
        every field the handlers read but the latency (``seconds``, which the duration histograms
        observe). The first flow of a key is built and counted by every handler; later ones repeat
        its counter increments and observe their own latency in its histogram rows."""
        with self._lock:
            counted = self._memo_l7.get(key)
            if counted is None:
                flow = build()
                flows: list[tuple[MetricFamily, LabelValues]] = []
                http: list[Any] = []
                self._recording, self._http.recording = flows, http
                try:
                    for handler, family, ctx in self._handlers:
                        handler(flow, family, ctx)
                    self._http.process(flow)
                finally:
                    self._recording = self._http.recording = None
                if len(self._memo_l7) >= MEMO_MAX:
                    self._memo_l7.clear()
                self._memo_l7[key] = (flows, http)
                return
            for family, values in counted[0]:
                family.values[values] = family.values.get(values, 0.0) + 1.0
            for family, values, histogram in counted[1]:
                if histogram:
                    family.observe_values(values, seconds)
                else:
                    family.values[values] = family.values.get(values, 0.0) + 1.0

    def process_keyed(self, key: Hashable, build: Callable[[], Any], count: int = 1) -> None:
        """Count ``count`` L3/L4 flows (traces, drops, policy verdicts: no L7 handler counts those)
        that ``key`` stands for: ``key`` must determine every field the handlers read. The first
        flow of a key is built and counted; later flows of the key repeat what it counted
        without being built."""
        counted = self._memo.get(key)
        if counted is None:
            flow = build()
            with self._lock:  # l7proc: the proxies' threads count too (see process_l7_keyed)
                self._recording = counted = []
                try:
                    for handler, family, ctx in self._handlers:
                        handler(flow, family, ctx)
                finally:
                    self._recording = None
            if len(self._memo) >= MEMO_MAX:
                self._memo.clear()
            self._memo[key] = counted
            count -= 1
        if count:
            for family, values in counted:
                family.values[values] = family.values.get(values, 0.0) + count

    def lost(self, source: str, count: int = 1) -> None:
        """``source``: perf_event_ring_buffer, observer_events_queue or hubble_ring_buffer."""
        self.lost_events.inc([source], count)

    def _inc(self, family: MetricFamily, flow: Any, ctx: tuple[str, ...], values: tuple[str, ...],
             ctx_first: bool = False) -> None:
        """Count one flow: ``values`` are the metric's own labels in the family's order; the
        labelsContext values go before them (drop, ``ctx_first``) or after them (the others)."""
        if ctx:
            extra = tuple(context_value(flow, name) for name in ctx)
            values = extra + values if ctx_first else values + extra
        family.values[values] = family.values.get(values, 0.0) + 1.0
        if self._recording is not None:
            self._recording.append((family, values))

    def _flow(self, flow: Any, family: MetricFamily, ctx: tuple[str, ...]) -> None:
        kind, subtype = flow.event_type.type, ""
        type_name = _TYPE_NAMES.get(kind, "Unknown")
        if kind == 129:
            subtype = _L7_NAMES.get(flow.l7.WhichOneof("record") or "", "") if flow.HasField("l7") else ""
        elif kind == 4 and 0 <= flow.event_type.sub_type < len(TRACE_POINT_NAMES):
            subtype = TRACE_POINT_NAMES[flow.event_type.sub_type]
        self._inc(family, flow, ctx, (flow_protocol(flow), type_name, subtype, enum_name(flow, "verdict")))

    def _drop(self, flow: Any, family: MetricFamily, ctx: tuple[str, ...]) -> None:
        if flow.verdict != _DROPPED:
            return
        self._inc(family, flow, ctx, (enum_name(flow, "drop_reason_desc"), flow_protocol(flow)), ctx_first=True)

    @staticmethod
    def _forwarded(flow: Any) -> bool:
        return flow.verdict in _FORWARDED

    def _tcp(self, flow: Any, family: MetricFamily, ctx: tuple[str, ...]) -> None:
        if flow.verdict not in _FORWARDED or not flow.HasField("l4") or flow.l4.WhichOneof("protocol") != "TCP":
            return
        flags, fam = flow.l4.TCP.flags, enum_name(flow.IP, "ipVersion")
        names = (["FIN"] if flags.FIN else []) + (["RST"] if flags.RST else [])
        if flags.SYN:
            names.append("SYN-ACK" if flags.ACK else "SYN")
        for name in names:
            self._inc(family, flow, ctx, (name, fam))

    def _port(self, flow: Any, family: MetricFamily, ctx: tuple[str, ...]) -> None:
        if flow.verdict not in _FORWARDED or not flow.HasField("is_reply") or flow.is_reply.value:
            return
        proto = flow.l4.WhichOneof("protocol") if flow.HasField("l4") else None
        if proto not in ("TCP", "UDP", "SCTP"):
            return
        port = getattr(flow.l4, proto).destination_port
        self._inc(family, flow, ctx, (proto, str(port)))

    def _icmp(self, flow: Any, family: MetricFamily, ctx: tuple[str, ...]) -> None:
        proto = flow.l4.WhichOneof("protocol") if flow.HasField("l4") else None
        if proto not in ("ICMPv4", "ICMPv6"):
            return
        icmp, fam = getattr(flow.l4, proto), "IPv4" if proto == "ICMPv4" else "IPv6"
        name = icmp_type_name(4 if proto == "ICMPv4" else 6, icmp.type, icmp.code)
        self._inc(family, flow, ctx, (fam, name))
