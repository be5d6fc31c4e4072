"""LB-IPAM's pure logic: pool ranges, conflicts, allocation, sharing, release, and the status it writes."""

from __future__ import annotations

from typing import Any

import pytest

from membrane.lbipam.allocator import allocate
from membrane.lbipam.pools import mark_conflicts, parse_pool
from membrane.lbipam.status import SERVICE_CONDITION, pool_status, service_status
from membrane.model.errors import ValidationError
from membrane.model.validate import validate_object

NOW = "2026-01-01T00:00:00Z"


def pool(name: str, *blocks: dict[str, str], created: str = "2026-01-01T00:00:00Z", **spec: Any) -> dict[str, Any]:
    obj = {"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumLoadBalancerIPPool",
           "metadata": {"name": name}, "spec": {"blocks": list(blocks), **spec}}
    out = validate_object(obj, "test")
    out["metadata"]["creationTimestamp"] = created
    return out


def svc(name: str, *, ns: str = "default", created: str = "2026-01-01T00:00:01Z", labels: dict | None = None,
        annotations: dict | None = None, ips: list[str] | None = None, port: int = 80, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created, "labels": labels or {},
                         "annotations": annotations or {}},
            "spec": {"type": "LoadBalancer", "ports": [{"port": port, "protocol": "TCP"}], **spec},
            "status": {"loadBalancer": {"ingress": [{"ip": i} for i in ips or []]}}}


def run(pools: list[dict], services: list[dict]):
    parsed = mark_conflicts([parse_pool(p) for p in pools])
    return parsed, allocate(parsed, services)


def test_seed_pool_allocates_first_usable_addresses_and_counts() -> None:
    p = pool("cilium-pool", {"cidr": "10.10.200.0/29"}, allowFirstLastIPs="No")
    parsed, res = run([p], [svc("svc1"), svc("svc2", created="2026-01-01T00:00:02Z"),
                            svc("svc3", created="2026-01-01T00:00:03Z")])
    assert [res.services[f"default/svc{i}"].ips for i in (1, 2, 3)] == [["10.10.200.1"], ["10.10.200.2"], ["10.10.200.3"]]
    assert parsed[0].total == 6 and res.used["cilium-pool"] == 3
    status = pool_status(parsed[0], res.used["cilium-pool"], None, NOW)
    assert status is not None
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["cilium.io/IPsAvailable"]["message"] == "3"
    assert by_type["cilium.io/IPsTotal"]["message"] == "6"
    assert by_type["cilium.io/PoolConflict"]["status"] == "False"
    assert pool_status(parsed[0], 3, status, "later") is None  # unchanged: nothing to write


def test_first_and_last_allowed_by_default_and_ranges_reserve_nothing() -> None:
    parsed, res = run([pool("a", {"cidr": "10.1.0.0/30"}), pool("b", {"start": "10.2.0.0", "stop": "10.2.0.1"})],
                      [])
    assert [p.total for p in parsed] == [4, 2]


def test_overlapping_pools_newer_is_conflicting_and_does_not_allocate() -> None:
    old = pool("blue", {"cidr": "20.0.10.0/24"}, created="2026-01-01T00:00:00Z")
    new = pool("red", {"start": "20.0.10.5", "stop": "20.0.10.9"}, created="2026-01-02T00:00:00Z",
               serviceSelector={"matchLabels": {"color": "red"}})
    parsed, res = run([new, old], [svc("r", labels={"color": "red"})])
    red = next(p for p in parsed if p.name == "red")
    assert red.conflict == "Pool conflicts since CIDR '20.0.10.5-20.0.10.9' overlaps CIDR '20.0.10.0/24' from IP Pool 'blue'"
    assert not next(p for p in parsed if p.name == "blue").conflict
    # r matches both (blue has no selector): it gets blue's address, never the conflicting red's
    assert res.services["default/r"].ips == ["20.0.10.0"]
    status = pool_status(red, 0, None, NOW)
    assert status is not None
    cond = next(c for c in status["conditions"] if c["type"] == "cilium.io/PoolConflict")
    assert (cond["status"], cond["reason"]) == ("True", "cidr_overlap")


def test_selector_mismatch_reports_no_pool() -> None:
    p = pool("blue", {"cidr": "20.0.10.0/24"}, serviceSelector={"matchLabels": {"color": "blue"}})
    _, res = run([p], [svc("red", labels={"color": "red"})])
    r = res.services["default/red"]
    assert r.ips == [] and r.verdict is not None
    assert (r.verdict.status, r.verdict.reason) == ("False", "no_pool")
    status = service_status(svc("red"), r, NOW)
    assert status is not None and status["loadBalancer"] == {}
    assert status["conditions"][0]["type"] == SERVICE_CONDITION


def test_special_namespace_key_selects() -> None:
    p = pool("t", {"cidr": "20.0.10.0/24"},
             serviceSelector={"matchLabels": {"io.kubernetes.service.namespace": "tenant-a"}})
    _, res = run([p], [svc("x", ns="tenant-a"), svc("y", ns="tenant-b")])
    assert res.services["tenant-a/x"].ips == ["20.0.10.0"]
    assert res.services["tenant-b/y"].ips == []


def test_requested_ips_and_deprecated_load_balancer_ip() -> None:
    p = pool("p", {"cidr": "10.5.0.0/24"})
    _, res = run([p], [svc("a", annotations={"lbipam.cilium.io/ips": "10.5.0.100,10.5.0.200"}),
                       svc("b", loadBalancerIP="10.5.0.7")])
    assert res.services["default/a"].ips == ["10.5.0.100", "10.5.0.200"]
    assert res.services["default/b"].ips == ["10.5.0.7"]


def test_requested_ip_outside_every_pool_is_reported() -> None:
    _, res = run([pool("p", {"cidr": "10.5.0.0/24"})], [svc("a", annotations={"lbipam.cilium.io/ips": "10.9.9.9"})])
    v = res.services["default/a"].verdict
    assert v is not None and v.reason == "no_pool" and "'10.9.9.9'" in v.message
    assert res.services["default/a"].ips == []


def test_requested_ip_taken_by_another_service_is_refused() -> None:
    p = pool("p", {"cidr": "10.5.0.0/24"})
    _, res = run([p], [svc("old", ips=["10.5.0.7"]),
                       svc("new", created="2026-01-02T00:00:00Z", annotations={"lbipam.cilium.io/ips": "10.5.0.7"})])
    assert res.services["default/old"].ips == ["10.5.0.7"]
    v = res.services["default/new"].verdict
    assert v is not None and v.reason == "already_allocated_incompatible_service"
    assert v.message.endswith("Reason: different sharing key")


def test_sharing_key_shares_unless_ports_clash() -> None:
    p = pool("p", {"cidr": "10.5.0.0/24"})
    key = {"lbipam.cilium.io/sharing-key": "k"}
    _, res = run([p], [svc("a", annotations=key, port=80),
                       svc("b", annotations=key, port=443, created="2026-01-01T00:00:02Z"),
                       svc("c", annotations=key, port=80, created="2026-01-01T00:00:03Z"),
                       svc("d", ns="other", annotations=key, port=8080, created="2026-01-01T00:00:04Z")])
    assert res.services["default/a"].ips == res.services["default/b"].ips == ["10.5.0.0"]
    assert res.services["default/c"].ips == ["10.5.0.1"]  # port 80 clashes with a
    assert res.services["other/d"].ips == ["10.5.0.2"]  # no cross-namespace annotation
    assert res.used["p"] == 3


def test_existing_allocation_kept_stably_and_released_on_delete() -> None:
    p = pool("p", {"cidr": "10.5.0.0/24"})
    _, res = run([p], [svc("a", ips=["10.5.0.9"]), svc("b", created="2026-01-01T00:00:05Z")])
    assert res.services["default/a"].ips == ["10.5.0.9"]
    assert res.services["default/b"].ips == ["10.5.0.0"]
    _, res = run([p], [svc("b", ips=["10.5.0.0"]), svc("c", created="2026-01-01T00:00:09Z")])  # a deleted
    assert res.services["default/c"].ips == ["10.5.0.1"]
    assert res.used["p"] == 2


def test_disabled_pool_keeps_existing_but_gives_no_new() -> None:
    p = pool("p", {"cidr": "10.5.0.0/24"}, disabled=True)
    _, res = run([p], [svc("a", ips=["10.5.0.3"]), svc("b")])
    assert res.services["default/a"].ips == ["10.5.0.3"]
    assert res.services["default/b"].ips == []
    assert res.services["default/b"].verdict is not None and res.services["default/b"].verdict.reason == "no_pool"


def test_pool_runs_out() -> None:
    p = pool("p", {"cidr": "10.5.0.0/31"})
    _, res = run([p], [svc(f"s{i}", created=f"2026-01-01T00:00:0{i}Z") for i in range(3)])
    v = res.services["default/s2"].verdict
    assert v is not None and v.reason == "out_of_ips"
    assert [res.services[f"default/s{i}"].ips for i in range(2)] == [["10.5.0.0"], ["10.5.0.1"]]


def test_type_change_and_foreign_class_release() -> None:
    p = pool("p", {"cidr": "10.5.0.0/24"})
    was = svc("a", ips=["10.5.0.1"])
    was["status"]["conditions"] = [{"type": SERVICE_CONDITION, "status": "True", "reason": "satisfied",
                                    "message": "", "lastTransitionTime": NOW}]
    was["spec"]["type"] = "NodePort"
    _, res = run([p], [was, svc("other", loadBalancerClass="example.com/lb")])
    assert not res.services["default/a"].handled
    status = service_status(was, res.services["default/a"], NOW)
    assert status == {}
    assert service_status(svc("other", loadBalancerClass="example.com/lb", ips=["1.2.3.4"]),
                          res.services["default/other"], NOW) is None  # never ours: untouched
    assert res.used["p"] == 0


def test_cilium_classes_are_handled() -> None:
    _, res = run([pool("p", {"cidr": "10.5.0.0/24"})], [svc("a", loadBalancerClass="io.cilium/l2-announcer")])
    assert res.services["default/a"].ips == ["10.5.0.0"]


def test_condition_time_kept_while_status_unchanged() -> None:
    _, res = run([pool("p", {"cidr": "10.5.0.0/24"})], [svc("a")])
    s = svc("a")
    first = service_status(s, res.services["default/a"], "t1")
    assert first is not None
    s["status"] = first
    _, res = run([pool("p", {"cidr": "10.5.0.0/24"})], [s])
    assert service_status(s, res.services["default/a"], "t2") is None


@pytest.mark.parametrize(("blocks", "error"), [
    ([{"cidr": "10.0.0.0/33"}], "spec.blocks[0].cidr: Invalid value: \"10.0.0.0/33\""),
    ([{"cidr": "10.0.0.0/24", "start": "10.0.0.1"}], "spec.blocks[0].start: Forbidden"),
    ([{"start": "10.0.0.9", "stop": "10.0.0.1"}], "must not be lower than start 10.0.0.9"),
    ([{"stop": "10.0.0.1"}], "spec.blocks[0]: Required value"),
    ([{"cidr": "10.0.0.0/24"}, {"start": "10.0.0.7"}], "spec.blocks[1]: Invalid value: \"10.0.0.7\": overlaps spec.blocks[0]"),
    ([], "spec.blocks: Required value"),
])
def test_bad_pools_are_refused(blocks: list, error: str) -> None:
    with pytest.raises(ValidationError) as exc:
        pool("bad", *blocks)
    assert error in str(exc.value)


def test_l2_policy_with_bad_regex_is_refused() -> None:
    obj = {"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumL2AnnouncementPolicy", "metadata": {"name": "p"},
           "spec": {"interfaces": ["^eth[0-9]+", "^ens[0-9"]}}
    with pytest.raises(ValidationError) as exc:
        validate_object(obj, "l2.yaml:doc 1")
    assert str(exc.value).startswith('l2.yaml:doc 1: spec.interfaces[1]: Invalid value: "^ens[0-9": not a valid regular expression')


def test_seed_manifest_gets_the_documented_addresses() -> None:
    """The seeds' l2-lbipam.yaml as published: svc1-3 get 10.10.200.1-3 from cilium-pool."""
    from pathlib import Path

    from membrane.cli.manifests import load_paths
    from membrane.model.validate import validate_documents

    objs = validate_documents(load_paths([str(Path(__file__).parent / "fixtures" / "model" / "l2-lbipam.yaml")]))
    pools = [o for o in objs if o["kind"] == "CiliumLoadBalancerIPPool"]
    services = [o for o in objs if o["kind"] == "Service"]
    for i, s in enumerate(services):
        s["metadata"]["creationTimestamp"] = f"2026-01-01T00:00:0{i}Z"
    _, res = run(pools, services)
    assert [res.services[f"default/svc{i}"].ips for i in (1, 2, 3)] == [["10.10.200.1"], ["10.10.200.2"], ["10.10.200.3"]]


def test_a_thousand_services_assign_in_one_fast_round() -> None:
    """Guard against quadratic scans: 1 000 Services (no sharing keys) in one round, well under 2 s."""
    import time

    services = [svc(f"s{i}", created=f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z") for i in range(1000)]
    start = time.perf_counter()
    _, res = run([pool("big", {"cidr": "172.30.0.0/20"})], services)
    assert time.perf_counter() - start < 2.0
    assert len({ip for r in res.services.values() for ip in r.ips}) == 1000
