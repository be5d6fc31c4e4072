"""mb_egress_v4 in the kernel: the layout user space writes is the one the LPM trie matches on
(source exact, longest destination prefix), and the reconciler with EgressOps keeps it exact."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from membrane.datapath.bpf.bpf_object import BpfObject
from membrane.datapath.maps.egress import EgressMap
from membrane.datapath.maps.egress_ops import EgressOps
from membrane.egressgw.rows import EXCLUDED, GatewayNode, LocalAddresses, SourcePod, egress_rows
from membrane.model.egress_gw import parse_egress_policy
from membrane.model.validate import validate_object
from membrane.state.reconciler import Reconciler
from membrane.state.table import Table

pytestmark = pytest.mark.root


@pytest.fixture
def egress(pin_dir: str, lxc_object: str) -> Iterator[EgressMap]:
    with BpfObject.open(lxc_object, pin_root=pin_dir) as lxc:
        lxc.load()
        with EgressMap.open(pin_dir) as m:
            yield m


def _rows() -> dict[tuple[str, str], tuple[str, str]]:
    obj = {"apiVersion": "cilium.io/v2", "kind": "CiliumEgressGatewayPolicy", "metadata": {"name": "p"},
           "spec": {"selectors": [{"podSelector": {"matchLabels": {"app": "bot"}}}],
                    "destinationCIDRs": ["0.0.0.0/0"], "excludedCIDRs": ["198.51.100.0/24"],
                    "egressGateway": {"nodeSelector": {"matchLabels": {"gw": "y"}}, "egressIP": "192.168.10.240"}}}
    nodes = [GatewayNode("w1", "192.168.10.11", {}, ("10.0.1.0/24",)),
             GatewayNode("w2", "192.168.10.12", {"gw": "y"}, ("10.0.2.0/24",))]
    pods = [SourcePod("default", "bot", "10.0.1.5", "w1", {"app": "bot"})]
    rows = egress_rows([parse_egress_policy(validate_object(obj, "t"))], pods, nodes, {}, LocalAddresses("w1"))
    return {(k.source_ip, k.destination): (t.gateway_ip, t.egress_ip) for k, t in rows.items()}


def test_longest_destination_prefix_for_the_exact_source(egress: EgressMap) -> None:
    rows = _rows()
    for (src, dst), (gw, eip) in rows.items():
        egress.update(src, dst, gw, eip)
    assert egress.entries() == rows
    assert egress.lookup("10.0.1.5", "8.8.8.8") == ("192.168.10.12", "192.168.10.240")
    assert egress.lookup("10.0.1.5", "198.51.100.7")[0] == EXCLUDED
    assert egress.lookup("10.0.1.5", "10.0.2.9")[0] == EXCLUDED  # another node's pods: in-cluster
    assert egress.lookup("10.0.1.5", "192.168.10.12")[0] == EXCLUDED  # a node IP
    assert egress.lookup("10.0.1.6", "8.8.8.8") is None  # not a selected source


def test_the_reconciler_writes_and_prunes(egress: EgressMap) -> None:
    table: Table[tuple[str, str], tuple[str, str]] = Table("egress", initialized=False)
    rec = Reconciler(table, EgressOps(lambda: egress, table.items), name="bpf-egress", prune_interval=None)
    egress.update("10.9.9.9", "1.2.3.0/24", "192.168.10.13", "0.0.0.0")  # stale: no row asks for it
    egress.update("10.0.1.5", "0.0.0.0/0", "192.168.10.99", "0.0.0.0")  # drifted value
    table.replace_all(_rows())
    table.mark_initialized()
    rec.run_once()
    rec.run_once()
    assert egress.entries() == _rows()
    table.replace_all({})
    rec.run_once()
    assert egress.entries() == {}
