"""What-if: which running pod pairs would change reachability under another policy set.

Both policy sets are resolved for every pod from the control plane alone; a connection from
``src`` to ``dst`` on a probe (protocol, port) needs ``src``'s egress and ``dst``'s ingress to
allow it, exactly as the datapath decides (see :func:`membrane.policy.mapstate.verdict`). Egress
named ports resolve against the pods' ports through the repository, as in the agent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from membrane.policy.l7 import L7_KINDS, TLS_KIND, redirects
from membrane.policy.mapstate import ALLOW, PROTOCOL_NUMBERS, ResolvedPolicy, verdict
from membrane.policy.namedports import peer_named_ports
from membrane.policy.repository import PolicyRepository
from membrane.policy.rules import EGRESS, INGRESS, Origin, Rule

_EMPTY: Mapping = MappingProxyType({})


@dataclass(frozen=True)
class PodInfo:
    """A running pod as the simulator sees it (``labels`` are its identity's labels)."""

    namespace: str
    name: str
    identity: int
    labels: Mapping[str, str]
    ip: str = ""
    named_ports: Mapping[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, order=True)
class Probe:
    protocol: str  # TCP | UDP | SCTP | ICMP (port = ICMP type)
    port: int

    @classmethod
    def parse(cls, text: str) -> Probe:
        """``80``, ``80/tcp``, ``53/UDP``, ``icmp`` (echo request)."""
        port, _, proto = text.partition("/")
        if port.lower() == "icmp" and not proto:
            return cls("ICMP", 8)
        protocol = (proto or "TCP").upper()
        if protocol not in PROTOCOL_NUMBERS or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"invalid probe {text!r}: expected PORT[/tcp|udp|sctp] or icmp")
        return cls(protocol, int(port))

    def __str__(self) -> str:
        return "icmp" if self.protocol == "ICMP" else f"{self.port}/{self.protocol}"


@dataclass(frozen=True)
class Outcome:
    verdict: str  # allow | deny | default-deny
    reason: int = 0  # 0, 181 or 133
    direction: str = ""  # the side that dropped it: egress (at src) or ingress (at dst)
    l7: str = ""  # allowed, but through an L7 proxy that decides per request: "http ingress", ...

    def __str__(self) -> str:
        if self.verdict == ALLOW:
            return f"{ALLOW} (L7-filtered: {self.l7})" if self.l7 else ALLOW
        return f"{self.verdict} ({self.direction}, {self.reason})"


@dataclass(frozen=True)
class Change:
    src: str
    dst: str
    probe: Probe
    before: Outcome
    after: Outcome


def resolve_pods(
    pods: Iterable[PodInfo],
    rules: Iterable[Rule],
    *,
    identities: Mapping[int, Mapping[str, str]] = _EMPTY,
    entities: Mapping[str, Iterable[int]] = _EMPTY,
    mode: str = "default",
) -> dict[str, ResolvedPolicy]:
    """Every pod's resolved policy under ``rules`` (``identities``: extra ones such as reserved)."""
    pods = list(pods)
    repo = PolicyRepository()
    for ident, labels in identities.items():
        repo.upsert_identity(ident, labels)
    for pod in pods:
        repo.upsert_identity(pod.identity, pod.labels)
    repo.set_peer_named_ports(peer_named_ports((pod.identity, pod.named_ports) for pod in pods))
    by_origin: dict[Origin, list[Rule]] = {}
    for rule in rules:
        by_origin.setdefault(rule.origin, []).append(rule)
    for origin, found in by_origin.items():
        repo.set_policy(origin, found)
    return {
        pod.key: repo.resolve(
            pod.identity, entities=entities, mode=mode, named_ports=pod.named_ports,
        )
        for pod in pods
    }


def connection_outcome(
    src: PodInfo, dst: PodInfo, probe: Probe, policies: Mapping[str, ResolvedPolicy]
) -> Outcome:
    protocol = PROTOCOL_NUMBERS[probe.protocol]
    l7 = []
    for pod, peer, direction in ((src, dst, EGRESS), (dst, src, INGRESS)):
        result, reason = verdict(policies[pod.key], peer.identity, protocol, probe.port, direction)
        if result != ALLOW:
            return Outcome(result, reason, direction)
        kind = redirected(policies[pod.key], peer.identity, protocol, probe.port, direction)
        if kind:
            l7.append(f"{kind} {direction}")
    return Outcome(ALLOW, l7=", ".join(l7))


def redirected(policy: ResolvedPolicy, peer: int, protocol: int, port: int, direction: str) -> str:
    """The L7 kind whose proxy sees this allowed connection ("" if none): as the datapath decides, the
    allow that wins (the peer's own entries first, then any peer's) redirects when it is exactly the
    redirected port (the entry that carries the proxy port, see agent policy_sync.map_rules)."""
    if not policy.l7:
        return ""
    entry = policy.lookup(peer, direction, protocol, port) or policy.lookup(0, direction, protocol, port)
    if entry is None or entry.deny or entry.port_prefix_len != 16:
        return ""
    for r in redirects(policy.l7):
        if (r.direction, r.protocol, r.port) == (direction, protocol, port) and r.kind in (*L7_KINDS, TLS_KIND):
            return r.kind
    return ""


def default_probes(pods: Iterable[PodInfo], *rule_sets: Iterable[Rule]) -> list[Probe]:
    """Ports named by the rules (range ends, resolved named ports); 80/TCP when none are."""
    named: dict[str, set[tuple[int, str]]] = {}
    for pod in pods:
        for name, hit in pod.named_ports.items():
            named.setdefault(name, set()).add(hit)
    probes: set[Probe] = set()
    for rules in rule_sets:
        for rule in rules:
            for spec in rule.ports or ():
                protocols = ("TCP", "UDP") if spec.protocol == "ANY" else (spec.protocol,)
                if spec.name:
                    probes |= {Probe(proto.upper(), port) for port, proto in named.get(spec.name, ())
                               if spec.protocol in ("ANY", proto.upper())}
                elif spec.port:
                    probes |= {Probe(p, n) for p in protocols for n in {spec.port, spec.end_port or spec.port}}
            if rule.icmps:
                probes.add(Probe("ICMP", 8))
    return sorted(p for p in probes if p.protocol != "ICMP" or p.port == 8) or [Probe("TCP", 80)]


def simulate(
    pods: Iterable[PodInfo],
    current: Iterable[Rule],
    candidate: Iterable[Rule],
    *,
    probes: Iterable[Probe] | None = None,
    sources: Iterable[str] | None = None,
    destinations: Iterable[str] | None = None,
    identities: Mapping[int, Mapping[str, str]] = _EMPTY,
    entities: Mapping[str, Iterable[int]] = _EMPTY,
    mode: str = "default",
) -> list[Change]:
    """The (src, dst, probe) triples whose outcome differs between ``current`` and ``candidate``.

    ``sources``/``destinations`` restrict the pairs to those pod keys (``ns/name``); a pod is never
    paired with itself.
    """
    pods = list(pods)
    current, candidate = list(current), list(candidate)
    probe_list = list(probes) if probes is not None else default_probes(pods, current, candidate)
    before = resolve_pods(pods, current, identities=identities, entities=entities, mode=mode)
    after = resolve_pods(pods, candidate, identities=identities, entities=entities, mode=mode)
    srcs = set(sources) if sources is not None else None
    dsts = set(destinations) if destinations is not None else None
    changes = []
    for src in pods:
        if srcs is not None and src.key not in srcs:
            continue
        for dst in pods:
            if dst.key == src.key or (dsts is not None and dst.key not in dsts):
                continue
            for probe in probe_list:
                old = connection_outcome(src, dst, probe, before)
                new = connection_outcome(src, dst, probe, after)
                if old != new:
                    changes.append(Change(src.key, dst.key, probe, old, new))
    return changes

