"""Filter flags of ``membrane observe`` translated into Hubble FlowFilters, the way ``hubble observe`` does.

Each filter flag is recorded in command-line order as ``(name, value)`` (``("not", None)`` for ``--not``).
Flags go to the allowlist (``whitelist``) unless the flag right before was ``--not``, which sends that one
filter to the denylist (``blacklist``). Each list is built as two filters, *left OR right*: a flag that
matches either end of a flow (``--pod``, ``--ip``, ``--label``, ``--port``, ``--identity``) puts its source
field in the left filter and its destination field in the right one; every other flag goes into both. When
both filters come out equal only one is sent. Repeated values of one flag are ORed (a list in one field),
different flags are ANDed (different fields of one filter).

Filters are plain dicts keyed by the proto field names of ``flow.FlowFilter`` (enum values by name), ready
for ``google.protobuf.json_format.ParseDict``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

# monitor message types (pkg/monitor/api): names accepted by --type
MESSAGE_TYPES = {
    "drop": 1, "debug": 2, "capture": 3, "trace": 4, "policy-verdict": 5, "recorder": 6,
    "trace-sock": 7, "l7": 129, "agent": 130,
}
# trace observation points, the sub-types of "trace"
TRACE_POINTS = {
    "to-endpoint": 0, "to-proxy": 1, "to-host": 2, "to-stack": 3, "to-overlay": 4, "from-endpoint": 5,
    "from-proxy": 6, "from-host": 7, "from-stack": 8, "from-overlay": 9, "from-network": 10,
    "to-network": 11, "from-crypto": 12, "to-crypto": 13,
}
VERDICTS = ("FORWARDED", "DROPPED", "ERROR", "AUDIT", "REDIRECTED", "TRACED", "TRANSLATED")
RESERVED_IDENTITIES = {
    "host": 1, "world": 2, "unmanaged": 3, "health": 4, "init": 5, "remote-node": 6,
    "kube-apiserver": 7, "ingress": 8, "world-ipv4": 9, "world-ipv6": 10,
}

# flags whose value matches either end: (source field, destination field)
EITHER_END = {
    "pod": ("source_pod", "destination_pod"),
    "ip": ("source_ip", "destination_ip"),
    "label": ("source_label", "destination_label"),
    "port": ("source_port", "destination_port"),
    "identity": ("source_identity", "destination_identity"),
    "service": ("source_service", "destination_service"),
    "workload": ("source_workload", "destination_workload"),
    "fqdn": ("source_fqdn", "destination_fqdn"),
}
# flags that set one field in both filters
ONE_FIELD = {
    "from-pod": "source_pod", "to-pod": "destination_pod",
    "from-ip": "source_ip", "to-ip": "destination_ip",
    "from-label": "source_label", "to-label": "destination_label",
    "from-port": "source_port", "to-port": "destination_port",
    "from-identity": "source_identity", "to-identity": "destination_identity",
    "from-service": "source_service", "to-service": "destination_service",
    "from-workload": "source_workload", "to-workload": "destination_workload",
    "protocol": "protocol", "node-name": "node_name", "uuid": "uuid",
    "http-status": "http_status_code", "http-method": "http_method", "http-path": "http_path", "http-url": "http_url",
    "from-fqdn": "source_fqdn", "to-fqdn": "destination_fqdn",
}
TCP_FLAGS = ("SYN", "FIN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")
CONFLICTS = (
    ("from-ip", "ip", "namespace"), ("from-ip", "ip", "from-pod", "pod"),
    ("to-ip", "ip", "namespace"), ("to-ip", "ip", "to-pod", "pod"),
    ("from-ip", "ip", "from-namespace"), ("to-ip", "ip", "to-namespace"),
    ("to-pod", "namespace"), ("from-pod", "namespace"),
    ("label", "from-label"), ("label", "to-label"),
    ("port", "to-port"), ("port", "from-port"),
    ("identity", "to-identity"), ("identity", "from-identity"),
    ("service", "to-service"), ("service", "from-service"),
    ("workload", "to-workload"), ("workload", "from-workload"),
    ("fqdn", "to-fqdn"), ("fqdn", "from-fqdn"),
    ("all-namespaces", "namespace"), ("all-namespaces", "from-namespace"), ("all-namespaces", "to-namespace"),
)
# flags without a value
SWITCHES = ("ipv4", "ipv6", "all-namespaces")
FILTER_FLAGS = (*EITHER_END, *ONE_FIELD, "namespace", "from-namespace", "to-namespace", "verdict", "type",
                "traffic-direction", "drop-reason-desc", "tcp-flags", "reply", "cel-expression")


class FilterError(ValueError):
    """A filter flag with a bad value, or two flags that cannot be combined."""


def _identity(value: str) -> int:
    if value in RESERVED_IDENTITIES:
        return RESERVED_IDENTITIES[value]
    try:
        n = int(value, 10)
    except ValueError:
        n = -1
    if not 0 <= n <= 0xFFFFFFFF:
        names = ", ".join(RESERVED_IDENTITIES)
        raise FilterError(f"invalid security identity {value!r}, expected one of {names} or a numeric value")
    return n


def event_type_filter(value: str) -> dict[str, Any]:
    """``trace``, ``trace:to-endpoint``, ``drop``, ``policy-verdict``, ``4:3`` → an EventTypeFilter dict."""
    kind, _, sub = value.partition(":")
    if kind in MESSAGE_TYPES:
        type_num = MESSAGE_TYPES[kind]
    elif kind.isascii() and kind.isdigit():
        type_num = int(kind)
    else:
        raise FilterError(f"unknown --type {kind!r}, expected one of {', '.join(MESSAGE_TYPES)} or a number")
    result: dict[str, Any] = {"type": type_num}
    if sub:
        if type_num == MESSAGE_TYPES["trace"] and sub in TRACE_POINTS:
            sub_num = TRACE_POINTS[sub]
        elif sub.isascii() and sub.isdigit():
            sub_num = int(sub)
        else:
            raise FilterError(f"unknown event sub-type {sub!r} of --type {kind}")
        result["match_sub_type"] = True
        result["sub_type"] = sub_num
    return result


def _workload(value: str) -> dict[str, str]:
    """``name`` or ``kind/name`` (e.g. ``Deployment/web``) → a Workload."""
    kind, _, name = value.rpartition("/")
    if not name:
        raise FilterError(f"invalid workload {value!r}, expected name or kind/name")
    return {"kind": kind, "name": name} if kind else {"name": name}


def drop_reason_names() -> set[str]:
    """The DropReason enum names Hubble accepts for --drop-reason-desc."""
    from membrane.hubble.proto.flow import flow_pb2  # protobuf only when this flag is used

    return set(flow_pb2.DropReason.keys())


def _namespaced(values: list[str], namespaces: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        if "/" in value:
            out.append(value)
        else:
            out.extend(f"{ns}/{value}" for ns in namespaces)
    return out


@dataclass
class FilterTracker:
    """One list (allow or deny) under construction: the result is ``left OR right``."""

    left: dict[str, Any] | None = None
    right: dict[str, Any] | None = None
    namespaces: list[str] = field(default_factory=list)
    src_namespaces: list[str] = field(default_factory=list)
    dst_namespaces: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def _side(self, which: str) -> dict[str, Any]:
        if getattr(self, which) is None:
            setattr(self, which, {})
        return getattr(self, which)

    def append(self, key: str, value: Any, sides: tuple[str, ...] = ("left", "right")) -> None:
        for which in sides:
            self._side(which).setdefault(key, []).append(copy.deepcopy(value))

    def set_flag(self, name: str, value: str) -> None:
        if name not in self.changed:
            self.changed.append(name)
        for group in CONFLICTS:
            if name in group:
                for other in group:
                    if other != name and other in self.changed:
                        raise FilterError(f"filters --{name} and --{other} cannot be combined")
        if name in EITHER_END:
            src, dst = EITHER_END[name]
            val: Any = _identity(value) if name == "identity" else _workload(value) if name == "workload" else value
            self.append(src, val, ("left",))
            self.append(dst, val, ("right",))
        elif name in ONE_FIELD:
            key = ONE_FIELD[name]
            self.append(key, _identity(value) if key.endswith("_identity")
                        else _workload(value) if key.endswith("_workload") else value)
        elif name == "namespace":
            self.namespaces.append(value)
        elif name == "from-namespace":
            self.src_namespaces.append(value)
        elif name == "to-namespace":
            self.dst_namespaces.append(value)
        elif name == "verdict":
            verdict = value.upper()
            if verdict not in VERDICTS:
                raise FilterError(f"invalid --verdict value: {value} (one of {', '.join(VERDICTS)})")
            self.append("verdict", verdict)
        elif name == "type":
            self.append("event_type", event_type_filter(value))
        elif name in ("ipv4", "ipv6"):
            self.append("ip_version", "IPv4" if name == "ipv4" else "IPv6")
        elif name == "cel-expression":
            for which in ("left", "right"):
                self._side(which).setdefault("experimental", {}).setdefault("cel_expression", []).append(value)
        elif name == "all-namespaces":
            pass  # every namespace: no filter (hubble's -A)
        elif name == "reply":
            if value.lower() not in ("true", "false"):
                raise FilterError(f"invalid --reply value: {value} (true or false)")
            self.append("reply", value.lower() == "true")
        elif name == "drop-reason-desc":
            reason = value.upper()
            if reason not in drop_reason_names():
                raise FilterError(f"invalid --drop-reason-desc value: {value} (a drop reason such as POLICY_DENIED)")
            self.append("drop_reason_desc", reason)
        elif name == "tcp-flags":
            flags = [f.strip().upper() for f in value.split(",") if f.strip()]
            bad = [f for f in flags if f not in TCP_FLAGS]
            if bad or not flags:
                raise FilterError(f"invalid --tcp-flags value: {value} (comma-separated {', '.join(TCP_FLAGS)})")
            self.append("tcp_flags", dict.fromkeys(flags, True))
        elif name == "traffic-direction":
            direction = value.lower()
            if direction not in ("ingress", "egress"):
                raise FilterError(f"{value}: invalid traffic direction, expected ingress or egress")
            self.append("traffic_direction", direction.upper())
        else:
            raise FilterError(f"unknown filter --{name}")

    def filters(self) -> list[dict[str, Any]]:
        if self.left is None and self.right is None and not (
                self.namespaces or self.src_namespaces or self.dst_namespaces):
            return []
        left, right = copy.deepcopy(self.left or {}), copy.deepcopy(self.right or {})
        # namespaces qualify pod names (an empty pod list means: any pod of the namespace)
        plan = [(self.dst_namespaces, ((left, "destination_pod"), (right, "destination_pod"))),
                (self.src_namespaces, ((left, "source_pod"), (right, "source_pod"))),
                (self.namespaces, ((left, "source_pod"), (right, "destination_pod")))]
        for namespaces, sides in plan:
            if namespaces:
                for side, key in sides:
                    side[key] = _namespaced(side.get(key) or [""], namespaces)
        return [left] if left == right else [left, right]


def build_filters(flags: list[tuple[str, str | None]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``[(flag, value), …]`` in command-line order → ``(whitelist, blacklist)`` FlowFilter dicts."""
    allow, deny = FilterTracker(), FilterTracker()
    negate = False
    for name, value in flags:
        if name == "not":
            if negate:
                raise FilterError("consecutive --not statements")
            negate = True
            continue
        if value is None and name not in SWITCHES:
            raise FilterError(f"--{name} needs a value")
        (deny if negate else allow).set_flag(name, value or "")
        negate = False
    if negate:
        raise FilterError("--not must be followed by a filter")
    return allow.filters(), deny.filters()
