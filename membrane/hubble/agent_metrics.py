"""The cilium-agent Prometheus series (reference §10) on a :class:`~membrane.hubble.metrics.Registry`.

The agent fills them either directly (``map_op``, ``observe_policy_regeneration``) or through
:class:`AgentSources` callbacks that run at scrape time (endpoint states, identities, policies, the
datapath's drop/forward counters read from the BPF metrics map). Pure: no I/O.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from membrane.hubble.metrics import Registry
from membrane.hubble.monitor import DROP_REASON_TEXTS

# datapath texts of drop reasons, as cilium_drop_count_total labels them: the monitor's, one list
DROP_REASON_TEXT = DROP_REASON_TEXTS
REGENERATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

MEMBRANE_VERSION = "0.1.0"  # the agent's version, as cilium_version{version}


def drop_reason_text(code: int) -> str:
    """``133`` → ``Policy denied``; unknown codes as their number, like Cilium."""
    return DROP_REASON_TEXT.get(code, str(code))


# (reason code, direction) -> (packets, bytes); direction -> (packets, bytes)
DropCounters = Mapping[tuple[int, str], tuple[int, int]]
ForwardCounters = Mapping[str, tuple[int, int]]


@dataclass(frozen=True)
class AgentSources:
    """Callbacks read at scrape time; any may be None.

    ``endpoint_states``: state name (``ready``, ``waiting-for-identity`` …) → count.
    ``identities``: identity type (``cluster_local``, ``node_local``, ``reserved`` …) → count.
    ``policy``: (rules loaded, highest policy revision).
    ``datapath``: absolute counters from the BPF metrics map, (drops, forwards).
    ``controllers_failing``, ``unreachable_nodes``: counts for the gauges of those names.
    """

    endpoint_states: Callable[[], Mapping[str, int]] | None = None
    identities: Callable[[], Mapping[str, int]] | None = None
    policy: Callable[[], tuple[int, int]] | None = None
    datapath: Callable[[], tuple[DropCounters, ForwardCounters]] | None = None
    controllers_failing: Callable[[], int] | None = None  # controllers whose last run failed
    unreachable_nodes: Callable[[], int] | None = None  # other nodes not Ready


class AgentMetrics:
    """cilium_* metric families; register once per agent registry."""

    def __init__(self, registry: Registry, sources: AgentSources | None = None) -> None:
        self.endpoint = registry.gauge("cilium_endpoint", "Number of endpoints managed by this agent")
        self.endpoint_state = registry.gauge(
            "cilium_endpoint_state",
            "Count of all endpoints, tagged by different endpoint states",
            ["endpoint_state"],
        )
        self.regeneration = registry.histogram(
            "cilium_policy_regeneration_time_stats_seconds",
            "Policy regeneration time stats labeled by the scope",
            ["scope"],
            REGENERATION_BUCKETS,
        )
        self.endpoint_regeneration = registry.histogram(
            "cilium_endpoint_regeneration_time_stats_seconds",
            "Endpoint regeneration time stats labeled by the scope",
            ["scope"],
            REGENERATION_BUCKETS,
        )
        self.map_ops = registry.counter(
            "cilium_bpf_map_ops_total",
            "Total operations on map, tagged by map name",
            ["map_name", "operation", "outcome"],
        )
        self.drop_count = registry.counter(
            "cilium_drop_count_total",
            "Total dropped packets, tagged by drop reason and ingress/egress direction",
            ["reason", "direction"],
        )
        self.drop_bytes = registry.counter(
            "cilium_drop_bytes_total",
            "Total dropped bytes, tagged by drop reason and ingress/egress direction",
            ["reason", "direction"],
        )
        self.forward_count = registry.counter(
            "cilium_forward_count_total",
            "Total forwarded packets, tagged by ingress/egress direction",
            ["direction"],
        )
        self.forward_bytes = registry.counter(
            "cilium_forward_bytes_total",
            "Total forwarded bytes, tagged by ingress/egress direction",
            ["direction"],
        )
        self.identity = registry.gauge(
            "cilium_identity", "Number of identities currently allocated", ["type"]
        )
        self.policy = registry.gauge("cilium_policy", "Number of policies currently loaded")
        self.policy_max_revision = registry.gauge(
            "cilium_policy_max_revision", "Highest policy revision number in the agent"
        )
        self.version = registry.gauge("cilium_version", "Cilium version", ["version", "revision", "arch"])
        self.version.set([MEMBRANE_VERSION, "", platform.machine() or "unknown"], 1)
        self.controllers_failing = registry.gauge("cilium_controllers_failing", "Number of failing controllers")
        self.unreachable_nodes = registry.gauge("cilium_unreachable_nodes", "Number of nodes that cannot be reached")
        self.sources = sources or AgentSources()
        registry.add_collector(self.collect)

    # ---- pushed by the agent -------------------------------------------------------------------------
    def map_op(self, map_name: str, operation: str, outcome: str = "success", count: int = 1) -> None:
        """One BPF map operation (``update``, ``delete``, ``lookup``…), outcome ``success`` or ``fail``."""
        self.map_ops.inc([map_name, operation, outcome], count)

    def observe_policy_regeneration(self, scope: str, seconds: float) -> None:
        """A timed step of policy regeneration (``policyCalculation``, ``mapSync``, ``total``…)."""
        self.regeneration.observe([scope], seconds)

    def observe_endpoint_regeneration(self, scope: str, seconds: float) -> None:
        """A timed stage of an endpoint's creation (``ipam``, ``veth``, ``bpfAttach``, ``total``…)."""
        self.endpoint_regeneration.observe([scope], seconds)

    def set_endpoint_states(self, states: Mapping[str, int]) -> None:
        self.endpoint_state.clear()
        for state, count in states.items():
            self.endpoint_state.set([state], count)
        self.endpoint.set((), sum(states.values()))

    def set_identities(self, counts: Mapping[str, int]) -> None:
        self.identity.clear()
        for kind, count in counts.items():
            self.identity.set([kind], count)

    def set_policy(self, rules: int, max_revision: int = 0) -> None:
        self.policy.set((), rules)
        self.policy_max_revision.set((), max_revision)

    def set_datapath_counters(self, drops: DropCounters, forwards: ForwardCounters) -> None:
        """Absolute per-(reason, direction) counters; directions ``INGRESS``/``EGRESS``."""
        self.drop_count.clear()
        self.drop_bytes.clear()
        for (code, direction), (packets, nbytes) in drops.items():
            labels = [drop_reason_text(code), direction.upper()]
            self.drop_count.inc(labels, packets)
            self.drop_bytes.inc(labels, nbytes)
        self.forward_count.clear()
        self.forward_bytes.clear()
        for direction, (packets, nbytes) in forwards.items():
            self.forward_count.set([direction.upper()], packets)
            self.forward_bytes.set([direction.upper()], nbytes)

    # ---- pulled at scrape time -----------------------------------------------------------------------
    def collect(self) -> None:
        s = self.sources
        if s.endpoint_states is not None:
            self.set_endpoint_states(s.endpoint_states())
        if s.identities is not None:
            self.set_identities(s.identities())
        if s.policy is not None:
            self.set_policy(*s.policy())
        if s.datapath is not None:
            self.set_datapath_counters(*s.datapath())
        if s.controllers_failing is not None:
            self.controllers_failing.set((), s.controllers_failing())
        if s.unreachable_nodes is not None:
            self.unreachable_nodes.set((), s.unreachable_nodes())
