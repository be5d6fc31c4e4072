"""Monitor aggregation: how many trace events the datapath writes for Hubble (Cilium's settings).

Cilium's Helm values ``bpf.monitorAggregation`` (cilium-config ``monitor-aggregation``),
``bpf.monitorInterval`` (``monitor-aggregation-interval``) and ``bpf.monitorFlags``
(``monitor-aggregation-flags``), with Cilium's defaults: medium, 5s, all. The level names and
numbers are Cilium's (a number 0..4 is accepted as well, as Cilium does):

- ``none`` (0, alias ``disabled``): a trace for every packet at every observation point;
- ``lowest`` (1), ``low`` (2): no trace where a packet is received (from-endpoint, from-network, ...);
- ``medium`` (3): to-* traces only for packets conntrack reports: a connection's first packet in
  each direction, a TCP flag of ``monitorFlags`` seen for the first time in its direction, the
  first packet after ``monitorInterval`` since the direction's last report; to-network only for
  packets the host firewall's conntrack reports (as Cilium's to-netdev: a pod's packet leaving the
  node is not traced there);
- ``maximum`` (4, alias ``max``): as medium here.

Drops and policy verdicts are written at every level. bpf/lib/monitor_aggregation.h applies it.
"""

from __future__ import annotations

from dataclasses import dataclass

from membrane.model.errors import ValidationError

NONE, LOWEST, LOW, MEDIUM, MAXIMUM = range(5)
LEVELS = {"none": NONE, "disabled": NONE, "lowest": LOWEST, "low": LOW, "medium": MEDIUM,
          "max": MAXIMUM, "maximum": MAXIMUM}
LEVEL_NAMES = ("None", "Lowest", "Low", "Medium", "Max")  # as cilium-dbg prints them
# TCP header flag bits (byte 13), by the names Cilium's monitorFlags takes.
TCP_FLAGS = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20,
             "ece": 0x40, "cwr": 0x80}
ALL_FLAGS = 0xFF
MAX_INTERVAL = 65535  # seconds: what the datapath's field holds


@dataclass(frozen=True)
class MonitorAggregation:
    level: int = MEDIUM
    interval: int = 5  # seconds
    flags: int = ALL_FLAGS  # TCP flag bits

    @classmethod
    def parse(cls, level: str, interval: str, flags: str, what: str = "config") -> MonitorAggregation:
        """From the three settings' texts; ValidationError naming the Helm key and the reason."""
        return cls(parse_level(level, f"{what}: bpf.monitorAggregation"),
                   parse_interval(interval, f"{what}: bpf.monitorInterval"),
                   parse_flags(flags, f"{what}: bpf.monitorFlags"))

    @property
    def name(self) -> str:
        return LEVEL_NAMES[self.level]


def parse_level(raw: str, what: str) -> int:
    text = str(raw).strip().lower()
    if text in LEVELS:
        return LEVELS[text]
    if text.isdigit():
        if int(text) <= MAXIMUM:
            return int(text)
        raise ValidationError(f"{what}: {raw!r}: a level number must be between {NONE} and {MAXIMUM}")
    raise ValidationError(f"{what}: {raw!r} is not a monitor aggregation level "
                          "(none, lowest, low, medium, maximum, or 0..4)")


def parse_interval(raw: str, what: str) -> int:
    """A Go duration in whole seconds, between 1s and MAX_INTERVAL (the datapath counts seconds)."""
    from membrane.model.config import parse_duration  # config imports this module

    seconds = parse_duration(raw, what)
    if seconds < 1 or seconds > MAX_INTERVAL or seconds != int(seconds):
        raise ValidationError(f"{what}: {raw!r}: must be a whole number of seconds between 1s and {MAX_INTERVAL}s")
    return int(seconds)


def parse_flags(raw: str, what: str) -> int:
    """``all`` or a list of TCP flag names (``syn,fin,rst``; commas or spaces) as a bit mask."""
    names = [n for n in str(raw).replace(",", " ").lower().split() if n]
    if not names:
        raise ValidationError(f"{what}: empty: name TCP flags ({', '.join(TCP_FLAGS)}) or all")
    mask = 0
    for name in names:
        if name == "all":
            mask |= ALL_FLAGS
        elif name in TCP_FLAGS:
            mask |= TCP_FLAGS[name]
        else:
            raise ValidationError(f"{what}: {name!r} is not a TCP flag (one of {', '.join(TCP_FLAGS)}, or all)")
    return mask
