"""Hubble's FlowFilter semantics: a whitelist is an OR of filters, each filter an AND of its set
fields (values inside one field are ORed); a flow matching any blacklist filter is excluded."""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import urlsplit

from membrane.hubble import monitor
from membrane.hubble.proto.flow import flow_pb2

Predicate = Callable[[flow_pb2.Flow], bool]

_TERM = re.compile(
    r"\s*(?:(?P<neg>!)\s*(?P<nkey>[^\s,=!()]+)"
    r"|(?P<key>[^\s,=!()]+)\s*(?:(?P<op>==|=|!=)\s*(?P<val>[^\s,()]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<set>[^)]*)\))?)\s*(?:,|$)"
)


def _label_map(labels: Iterable[str]) -> dict[str, str]:
    """`k8s:app=web` -> {"k8s:app": "web", "app": "web"} so keys match with or without source."""
    out: dict[str, str] = {}
    for label in labels:
        key, _, value = label.partition("=")
        out[key] = value
        if ":" in key:
            out.setdefault(key.split(":", 1)[1], value)
    return out


def parse_selector(text: str) -> Predicate | Callable[[Sequence[str]], bool]:
    """Compile a Kubernetes label selector (`a=b,c!=d,e in (f,g),!h,i`) over flow label lists."""
    checks: list[Callable[[dict[str, str]], bool]] = []
    pos, text = 0, text.strip()
    while pos < len(text):
        m = _TERM.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"invalid label selector {text!r}")
        pos = m.end()
        if m["nkey"]:
            k = m["nkey"]
            checks.append(lambda labels, k=k: k not in labels)
        elif m["op"] in ("=", "=="):
            k, v = m["key"], m["val"]
            checks.append(lambda labels, k=k, v=v: labels.get(k) == v)
        elif m["op"] == "!=":
            k, v = m["key"], m["val"]
            checks.append(lambda labels, k=k, v=v: labels.get(k) != v)
        elif m["setop"]:
            k, values = m["key"], {s.strip() for s in m["set"].split(",")}
            if m["setop"] == "in":
                checks.append(lambda labels, k=k, vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=k, vs=values: labels.get(k) not in vs)
        else:
            k = m["key"]
            checks.append(lambda labels, k=k: k in labels)

    def match(labels: Sequence[str]) -> bool:
        lm = _label_map(labels)
        return all(check(lm) for check in checks)

    return match


def _ip_matcher(values: Sequence[str]) -> Callable[[str], bool]:
    nets = [ipaddress.ip_network(v, strict=False) for v in values]

    def match(ip: str) -> bool:
        if not ip:
            return False
        addr = ipaddress.ip_address(ip)
        return any(addr in net for net in nets)

    return match


def _pod_matches(patterns: Sequence[str], ep: flow_pb2.Endpoint) -> bool:
    for pattern in patterns:
        ns, sep, pod = pattern.partition("/")
        if not sep:
            ns, pod = "", pattern
        if (ep.namespace or ep.pod_name) and (not ns or ep.namespace == ns) and ep.pod_name.startswith(pod):
            return True
    return False


def _service_matches(patterns: Sequence[str], svc: flow_pb2.Service) -> bool:
    for pattern in patterns:
        ns, sep, name = pattern.partition("/")
        if not sep:
            ns, name = "", pattern
        if svc.name and (not ns or svc.namespace == ns) and svc.name.startswith(name):
            return True
    return False


def _ports(flow: flow_pb2.Flow) -> tuple[int, int] | None:
    kind = flow.l4.WhichOneof("protocol")
    if kind in ("TCP", "UDP", "SCTP"):
        layer = getattr(flow.l4, kind)
        return layer.source_port, layer.destination_port
    return None


def _protocol(flow: flow_pb2.Flow) -> set[str]:
    names: set[str] = set()
    kind = flow.l4.WhichOneof("protocol")
    if kind:
        names.add(kind.lower())
        if kind.startswith("ICMP"):
            names.add("icmp")
    record = flow.l7.WhichOneof("record") if flow.HasField("l7") else None
    if record:
        names.add(record)
    return names


def _workload_matches(wanted: Sequence[flow_pb2.Workload], ep: flow_pb2.Endpoint) -> bool:
    return any(
        (not w.name or w.name == have.name) and (not w.kind or w.kind == have.kind)
        for w in wanted
        for have in ep.workloads
    )


def _names_match(patterns: Sequence[str], names: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(n.rstrip("."), p.rstrip(".")) for p in patterns for n in names)


def _event_type_matches(wanted: Sequence[flow_pb2.EventTypeFilter], flow: flow_pb2.Flow) -> bool:
    et = flow.event_type
    return any(w.type == et.type and (not w.match_sub_type or w.sub_type == et.sub_type) for w in wanted)


def _tcp_flags_match(wanted: Sequence[flow_pb2.TCPFlags], flow: flow_pb2.Flow) -> bool:
    if flow.l4.WhichOneof("protocol") != "TCP":
        return False
    have = flow.l4.TCP.flags
    return any(all(getattr(have, f.name) for f, v in w.ListFields() if v) for w in wanted)


def compile_filter(flt: flow_pb2.FlowFilter) -> Predicate:
    """One FlowFilter -> predicate (AND of its set fields)."""
    checks: list[Predicate] = []
    add = checks.append
    if flt.uuid:
        add(lambda f, v=set(flt.uuid): f.uuid in v)
    if flt.source_ip:
        m = _ip_matcher(flt.source_ip)
        add(lambda f, m=m: m(f.IP.source))
    if flt.destination_ip:
        m = _ip_matcher(flt.destination_ip)
        add(lambda f, m=m: m(f.IP.destination))
    if flt.source_ip_xlated:
        m = _ip_matcher(flt.source_ip_xlated)
        add(lambda f, m=m: m(f.IP.source_xlated))
    if flt.source_pod:
        add(lambda f, p=list(flt.source_pod): _pod_matches(p, f.source))
    if flt.destination_pod:
        add(lambda f, p=list(flt.destination_pod): _pod_matches(p, f.destination))
    if flt.source_label:
        sels = [parse_selector(s) for s in flt.source_label]
        add(lambda f, s=sels: any(sel(f.source.labels) for sel in s))
    if flt.destination_label:
        sels = [parse_selector(s) for s in flt.destination_label]
        add(lambda f, s=sels: any(sel(f.destination.labels) for sel in s))
    if flt.source_service:
        add(lambda f, p=list(flt.source_service): _service_matches(p, f.source_service))
    if flt.destination_service:
        add(lambda f, p=list(flt.destination_service): _service_matches(p, f.destination_service))
    if flt.source_fqdn:
        add(lambda f, p=list(flt.source_fqdn): _names_match(p, f.source_names))
    if flt.destination_fqdn:
        add(lambda f, p=list(flt.destination_fqdn): _names_match(p, f.destination_names))
    if flt.source_workload:
        add(lambda f, w=list(flt.source_workload): _workload_matches(w, f.source))
    if flt.destination_workload:
        add(lambda f, w=list(flt.destination_workload): _workload_matches(w, f.destination))
    if flt.source_cluster_name:
        add(lambda f, v=set(flt.source_cluster_name): f.source.cluster_name in v)
    if flt.destination_cluster_name:
        add(lambda f, v=set(flt.destination_cluster_name): f.destination.cluster_name in v)
    if flt.source_identity:
        add(lambda f, v=set(flt.source_identity): f.source.identity in v)
    if flt.destination_identity:
        add(lambda f, v=set(flt.destination_identity): f.destination.identity in v)
    if flt.source_port:
        add(lambda f, v={int(p) for p in flt.source_port}: (p := _ports(f)) is not None and p[0] in v)
    if flt.destination_port:
        add(lambda f, v={int(p) for p in flt.destination_port}: (p := _ports(f)) is not None and p[1] in v)
    if flt.protocol:
        protocols = {p.lower() for p in flt.protocol}
        add(lambda f, v=protocols: bool(_protocol(f) & v))
    if flt.verdict:
        add(lambda f, v=set(flt.verdict): f.verdict in v)
    if flt.drop_reason_desc:
        add(lambda f, v=set(flt.drop_reason_desc): f.drop_reason_desc in v)
    if flt.event_type:
        add(lambda f, w=list(flt.event_type): _event_type_matches(w, f))
    if flt.traffic_direction:
        add(lambda f, v=set(flt.traffic_direction): f.traffic_direction in v)
    if flt.node_name:
        add(lambda f, p=list(flt.node_name): any(fnmatch.fnmatchcase(f.node_name, x) for x in p))
    if flt.reply:
        add(lambda f, v=set(flt.reply): f.HasField("is_reply") and f.is_reply.value in v)
    if flt.tcp_flags:
        add(lambda f, w=list(flt.tcp_flags): _tcp_flags_match(w, f))
    if flt.ip_version:
        add(lambda f, v=set(flt.ip_version): f.IP.ipVersion in v)
    if flt.encrypted:
        add(lambda f, v=set(flt.encrypted): f.IP.encrypted in v)
    if flt.interface:
        add(
            lambda f, w=list(flt.interface): any(
                (not i.index or i.index == f.interface.index) and (not i.name or i.name == f.interface.name)
                for i in w
            )
        )
    if flt.http_method:
        methods = {m.upper() for m in flt.http_method}
        add(lambda f, v=methods: f.l7.http.method.upper() in v)
    if flt.http_status_code:
        add(lambda f, v=list(flt.http_status_code): _status_matches(v, f.l7.http.code))
    if flt.http_path:
        add(lambda f, r=[re.compile(p) for p in flt.http_path]: (
            bool(f.l7.http.url) and any(x.search(urlsplit(f.l7.http.url).path) for x in r)))
    if flt.http_url:
        add(lambda f, r=[re.compile(p) for p in flt.http_url]: (
            bool(f.l7.http.url) and any(x.search(f.l7.http.url) for x in r)))
    if flt.dns_query:
        add(
            lambda f, r=[re.compile(q) for q in flt.dns_query]: (
                bool(f.l7.dns.query) and any(x.search(f.l7.dns.query) for x in r)
            )
        )

    if flt.experimental.cel_expression:
        from membrane.hubble.cel import compile_cel  # cel-python only for filters that use it

        add(compile_cel(list(flt.experimental.cel_expression)))  # slow: keep it the last check

    def match(flow: flow_pb2.Flow) -> bool:
        return all(check(flow) for check in checks)

    return match


def _status_matches(patterns: Sequence[str], code: int) -> bool:
    if not code:
        return False
    for p in patterns:
        if p.endswith("+") and str(code).startswith(p[:-1]):
            return True
        if str(code) == p:
            return True
    return False


def compile_filters(
    whitelist: Sequence[flow_pb2.FlowFilter] = (), blacklist: Sequence[flow_pb2.FlowFilter] = ()
) -> Predicate:
    """Whitelist (OR; empty = everything) minus blacklist (OR)."""
    allow = [compile_filter(f) for f in whitelist]
    deny = [compile_filter(f) for f in blacklist]

    def match(flow: flow_pb2.Flow) -> bool:
        if allow and not any(a(flow) for a in allow):
            return False
        return not any(d(flow) for d in deny)

    return match


def event_type_filter(name: str) -> flow_pb2.EventTypeFilter:
    """`hubble observe -t` values: `trace[:<point>]`, `drop`, `policy-verdict`, `l7`, …"""
    kind, _, sub = name.partition(":")
    types = {
        "drop": monitor.MSG_DROP,
        "debug": monitor.MSG_DEBUG,
        "capture": monitor.MSG_CAPTURE,
        "trace": monitor.MSG_TRACE,
        "policy-verdict": monitor.MSG_POLICY_VERDICT,
        "trace-sock": monitor.MSG_TRACE_SOCK,
        "l7": monitor.MSG_ACCESS_LOG,
        "agent": monitor.MSG_AGENT,
    }
    if kind not in types:
        raise ValueError(f"unknown event type {name!r}")
    out = flow_pb2.EventTypeFilter(type=types[kind])
    if sub:
        points = {v: k for k, v in monitor.TRACE_POINT_NAMES.items()}
        out.match_sub_type = True
        out.sub_type = points[sub] if sub in points else int(sub)
    return out
