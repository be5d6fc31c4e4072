"""LBMaps on real pinned maps: slots, reverse NAT, maglev tables, pruning and listing."""

from __future__ import annotations

import pytest

from membrane.datapath.loader import NodeDatapath
from membrane.datapath.maps.lb import (
    LB_F_AFFINITY,
    LB_F_MAGLEV,
    Backend,
    Frontend,
    LbSvcKey,
    ServiceRow,
)
from membrane.model.errors import ValidationError

pytestmark = pytest.mark.root

FRONTEND = Frontend("10.96.0.50", 80)
B1, B2, B3 = Backend(1, "10.200.0.11", 8080), Backend(2, "10.200.0.12", 8080), Backend(3, "10.200.0.13", 8080)


def _slot0(datapath: NodeDatapath, frontend: Frontend = FRONTEND):
    return datapath.lb.svc.get(frontend.key(0))


def test_services_are_listed_like_cilium_dbg(datapath: NodeDatapath) -> None:
    datapath.lb.upsert_service(FRONTEND, [B1, B2], rev_nat_index=5)
    datapath.lb.upsert_service(Frontend("10.96.0.10", 53, "UDP"), [Backend(9, "10.200.0.20", 53, "UDP")],
                               rev_nat_index=6)
    assert datapath.lb.services() == [
        ServiceRow("10.96.0.10:53/UDP", "0.0.0.0:0", 6, 0),
        ServiceRow("10.96.0.10:53/UDP", "10.200.0.20:53/UDP", 6, 1),
        ServiceRow("10.96.0.50:80/TCP", "0.0.0.0:0", 5, 0),
        ServiceRow("10.96.0.50:80/TCP", "10.200.0.11:8080/TCP", 5, 1),
        ServiceRow("10.96.0.50:80/TCP", "10.200.0.12:8080/TCP", 5, 2),
    ]
    assert datapath.lb.revnat() == [(5, "10.96.0.50:80"), (6, "10.96.0.10:53")]
    assert datapath.lb.services()[3].describe().endswith("10.200.0.11:8080/TCP (5) (1)")


def test_shrinking_removes_slots_and_unused_backends(datapath: NodeDatapath) -> None:
    lb = datapath.lb
    lb.upsert_service(FRONTEND, [B1, B2, B3], rev_nat_index=5)
    other = Frontend("10.96.0.51", 80)
    lb.upsert_service(other, [B3], rev_nat_index=7)

    lb.upsert_service(FRONTEND, [B1, Backend(2, B2.address, B2.port, terminating=True)], rev_nat_index=5)
    assert _slot0(datapath).count == 1
    assert lb.svc.get(FRONTEND.key(2)) is None and lb.svc.get(FRONTEND.key(3)) is None
    # B2 terminates (kept for its connections); B3 left this service but another one uses it.
    assert sorted(lb.backends()) == [1, 2, 3]
    assert lb.backends()[2].terminating

    lb.upsert_service(FRONTEND, [B1], rev_nat_index=5)
    assert sorted(lb.backends()) == [1, 2, 3]  # a terminating backend has no slot to prune it by
    assert lb.gc_backends(keep=set()) == [2]
    assert sorted(lb.backends()) == [1, 3]
    lb.upsert_service(FRONTEND, [B2], rev_nat_index=5)  # B1 leaves its slot: pruned at once
    assert sorted(lb.backends()) == [2, 3]


def test_delete_service_removes_everything_it_alone_used(datapath: NodeDatapath) -> None:
    lb = datapath.lb
    lb.upsert_service(FRONTEND, [B1, B2], rev_nat_index=5, algorithm="maglev", maglev_table=[1, 2, 1, 2, 1, 2, 1])
    assert lb.maglev_table(5) == [1, 2, 1, 2, 1, 2, 1]
    assert _slot0(datapath).flags & LB_F_MAGLEV and _slot0(datapath).backend_id == 7
    assert lb.delete_service(FRONTEND)
    assert not lb.delete_service(FRONTEND)
    assert lb.services() == [] and lb.revnat() == [] and lb.backends() == {} and lb.maglev_table(5) == []


def test_a_smaller_maglev_table_drops_the_extra_slots(datapath: NodeDatapath) -> None:
    lb = datapath.lb
    lb.upsert_service(FRONTEND, [B1, B2], rev_nat_index=5, algorithm="maglev", maglev_table=[1, 2] * 4 + [1])
    lb.upsert_service(FRONTEND, [B1], rev_nat_index=5, algorithm="maglev", maglev_table=[1] * 7)
    assert lb.maglev_table(5) == [1] * 7
    assert sorted(lb.backends()) == [1]


def test_affinity_sets_the_flag_and_timeout(datapath: NodeDatapath) -> None:
    datapath.lb.upsert_service(FRONTEND, [B1], rev_nat_index=5, affinity_timeout=10800)
    slot0 = _slot0(datapath)
    assert slot0.flags & LB_F_AFFINITY and slot0.affinity_timeout == 10800


@pytest.mark.parametrize("kwargs", [
    {"rev_nat_index": 0},
    {"rev_nat_index": 5, "algorithm": "round-robin"},
    {"rev_nat_index": 5, "algorithm": "maglev"},
    {"rev_nat_index": 5, "algorithm": "maglev", "maglev_table": [1, 99]},
])
def test_bad_services_are_refused(datapath: NodeDatapath, kwargs: dict) -> None:
    with pytest.raises(ValidationError):
        datapath.lb.upsert_service(FRONTEND, [B1], **kwargs)
    assert datapath.lb.services() == []


def test_bad_frontends_and_backends_are_refused() -> None:
    with pytest.raises(ValidationError):
        Frontend("10.96.0.500", 80)
    with pytest.raises(ValidationError):
        Frontend("10.96.0.50", 80, "SCTP")
    with pytest.raises(ValidationError):
        Backend(0, "10.200.0.11", 80)
    assert Frontend("10.96.0.50", 80, "udp").key().proto == 17
    assert isinstance(FRONTEND.key(), LbSvcKey)
