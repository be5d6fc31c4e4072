"""The datapath benchmark's encapsulated runs and their second anchor, a kernel VXLAN tunnel.

With ``MEMBRANE_BENCH_SET="routingMode=tunnel"`` (or ``encapsulation.mode=Always`` of type vxlan) the lab
encapsulates pod traffic between nodes, so comparing it only with plain kernel routing mixes two costs: the
encapsulation itself and our datapath. The same run then also measures a kernel VXLAN tunnel between two
scratch nodes (bench/kernelnet.py, ``tunnel=True``: the same shape, a ``vxlan0`` device per node, no BPF) and
reports Membrane-tunnel / kernel-tunnel rows next to the Membrane-tunnel / kernel-routing ones. Cilium's
published tunnel overhead is relative to its own native routing; the kernel-tunnel pairing says what our
BPF datapath adds on top of the encapsulation the kernel would do anyway.

Only pod traffic across nodes enters a tunnel, so only the ``across nodes`` path gets the second pairing.
BPF IPIP has no kernel counterpart here (this kernel has no ``ipip`` module), so it gets none.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from bench.harness import Measurement
from bench.kernelnet import RoutedPair, routed_pair

TUNNEL_BASELINE = "kernel VXLAN tunnel, no BPF"
TUNNEL_PATH = "across nodes"
TUNNEL_VARIANTS = ("open", "policy")  # the variants measured in the same loop as the baselines


def _values(settings: Iterable[str]) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in settings if "=" in kv)


def routing_label(settings: list[str]) -> str:
    """How the lab's nodes reach each other, as a suffix of the Membrane rows: "" for native routing,
    " [VXLAN tunnel]" (routingMode=tunnel), " [BPF IPIP Always]" (encapsulation.*), else the settings."""
    values = _values(settings)
    if values.get("routingMode") == "tunnel":
        return " [VXLAN tunnel]"
    mode = values.get("encapsulation.mode", "Never")
    if mode != "Never":
        kind = values.get("encapsulation.type", "vxlan")
        return f" [{'BPF IPIP' if kind == 'ipip' else 'VXLAN'} {mode}]"
    return f" [{' '.join(settings)}]" if settings else ""


def kernel_tunnel_wanted(settings: Iterable[str]) -> bool:
    """Whether the lab's settings put every cross-node pod packet into VXLAN: tunnel routing, or Calico-style
    ``encapsulation.mode=Always`` of type vxlan (CrossSubnet encapsulates nothing on the bench's one subnet)."""
    values = _values(settings)
    if values.get("routingMode") == "tunnel":
        return values.get("tunnelProtocol", "vxlan") == "vxlan"
    return values.get("encapsulation.mode") == "Always" and values.get("encapsulation.type", "vxlan") == "vxlan"


class TunnelRows:
    """One Measurement per (variant, metric) across nodes, each sample paired with a kernel-VXLAN sample."""

    def __init__(self, benchmark: str, labels: dict[str, str], metrics: Sequence[tuple[str, str, str]]) -> None:
        self.metrics = metrics
        self.rows = {(v, metric): Measurement(benchmark, f"{metric} {TUNNEL_PATH}, {labels[v]}", unit, [],
                                              baseline_name=TUNNEL_BASELINE)
                     for v in TUNNEL_VARIANTS for metric, unit, _ in metrics}

    def add(self, variant: str, path: str, ours: object, kernel_tunnel: object | None) -> None:
        """Pair ``ours`` with the kernel-tunnel sample of the same run; other paths and variants are skipped."""
        if kernel_tunnel is None or path != TUNNEL_PATH or variant not in TUNNEL_VARIANTS:
            return
        for metric, _, attr in self.metrics:
            row = self.rows[(variant, metric)]
            row.subject.append(getattr(ours, attr))
            row.baseline.append(getattr(kernel_tunnel, attr))

    def measurements(self) -> list[Measurement]:
        return list(self.rows.values())


@contextmanager
def kernel_tunnel_pair(prefix: str, wanted: bool) -> Iterator[RoutedPair | None]:
    """The scratch VXLAN pair (pod CIDRs 10.80.{1,2}.0/24) when ``wanted``, else None."""
    if not wanted:
        yield None
        return
    with routed_pair(prefix, "v", 80, tunnel=True) as pair:
        yield pair
