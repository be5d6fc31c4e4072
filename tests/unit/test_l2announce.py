"""L2 announcements' pure parts: which Services a node may announce where, the election rules, the
timers' checks, and the ARP frames the responder reads and writes."""

from __future__ import annotations

from typing import Any

import pytest

from membrane.datapath.linux.arp_responder import arp_frame, parse_request
from membrane.l2announce.election import Action, Holder, decide, renewal_ok
from membrane.l2announce.selection import announcements, lease_name, parse_policy
from membrane.model.config import ClusterConfig
from membrane.model.errors import ValidationError
from membrane.model.validate import validate_object


def policy(**spec: Any):
    obj = validate_object({"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumL2AnnouncementPolicy",
                           "metadata": {"name": "p"}, "spec": spec}, "test")
    return parse_policy(obj)


def svc(name: str, lb: list[str] = (), ext: list[str] = (), labels: dict | None = None, **spec: Any) -> dict:
    return {"metadata": {"name": name, "namespace": "default", "labels": labels or {}},
            "spec": {"type": "LoadBalancer", "externalIPs": list(ext), **spec},
            "status": {"loadBalancer": {"ingress": [{"ip": i} for i in lb]}}}


SEED = dict(serviceSelector={"matchLabels": {"color": "blue"}},
            nodeSelector={"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane",
                                                "operator": "DoesNotExist"}]},
            interfaces=["^ens[0-9]+"], externalIPs=True, loadBalancerIPs=True)


def test_seed_policy_selects_blue_services_on_workers_with_ens_devices() -> None:
    p = policy(**SEED)
    blue = svc("web", lb=["10.10.200.1"], ext=["192.0.2.7"], labels={"color": "blue"})
    red = svc("red", lb=["10.10.200.2"], labels={"color": "red"})
    got = announcements([p], [blue, red], {}, ["ens5", "eth1"])
    assert list(got) == ["default/web"]
    assert got["default/web"].ips == ("10.10.200.1", "192.0.2.7")
    assert got["default/web"].devices == ("ens5",)
    assert announcements([p], [blue], {"node-role.kubernetes.io/control-plane": ""}, ["ens5"]) == {}
    assert announcements([p], [blue], {}, ["eth1"]) == {}  # no matching device: not a candidate


def test_flags_choose_which_addresses() -> None:
    s = svc("web", lb=["10.0.0.1"], ext=["10.0.0.2"])
    assert announcements([policy(loadBalancerIPs=True)], [s], {}, ["eth1"])["default/web"].ips == ("10.0.0.1",)
    assert announcements([policy(externalIPs=True)], [s], {}, ["eth1"])["default/web"].ips == ("10.0.0.2",)
    assert announcements([policy()], [s], {}, ["eth1"]) == {}


def test_foreign_load_balancer_class_and_ipv6_are_not_announced() -> None:
    p = policy(loadBalancerIPs=True)
    assert announcements([p], [svc("a", lb=["10.0.0.1"], loadBalancerClass="example.com/x")], {}, ["eth1"]) == {}
    assert list(announcements([p], [svc("b", lb=["10.0.0.1"], loadBalancerClass="io.cilium/l2-announcer")],
                              {}, ["eth1"])) == ["default/b"]
    assert announcements([p], [svc("c", lb=["2001:db8::1"])], {}, ["eth1"]) == {}


def test_special_service_name_key() -> None:
    p = policy(loadBalancerIPs=True, serviceSelector={"matchLabels": {"io.kubernetes.service.name": "b"}})
    got = announcements([p], [svc("a", lb=["10.0.0.1"]), svc("b", lb=["10.0.0.2"])], {}, ["eth1"])
    assert list(got) == ["default/b"]


def test_lease_name_is_ciliums() -> None:
    assert lease_name("kube-system/web") == "cilium-l2announce-kube-system-web"


@pytest.mark.parametrize(("candidate", "holder", "action"), [
    (True, None, Action.ACQUIRE),
    (True, Holder("me", 7), Action.KEEP),
    (True, Holder("me", 3), Action.TAKE_OVER),
    (True, Holder("other", 7), Action.FOLLOW),
    (False, Holder("me", 7), Action.RELEASE),
    (False, Holder("other", 7), None),
    (False, None, None),
])
def test_election_rules(candidate: bool, holder: Holder | None, action: Action | None) -> None:
    assert decide("me", 7, candidate, holder) is action


def test_renew_deadline() -> None:
    assert renewal_ok(100.0, 96.0, 5.0)
    assert not renewal_ok(100.0, 94.0, 5.0)
    assert not renewal_ok(100.0, 0.0, 5.0)


def test_timers_default_to_ciliums_and_check_like_it() -> None:
    cfg = ClusterConfig()
    assert cfg.l2_timers() == (15.0, 5.0, 2.0)
    cfg.set("l2announcements.leaseDuration", "3s")
    cfg.set("l2announcements.leaseRenewDeadline", "1s")
    cfg.set("l2announcements.leaseRetryPeriod", "200ms")  # the seeds' helm line
    assert cfg.l2_timers() == (3.0, 1.0, 0.2)
    cfg.set("l2announcements.leaseRetryPeriod", "1s")  # alone fine: relations are checked once all are set
    with pytest.raises(ValidationError, match="leaseRenewDeadline .* at least 20% larger"):
        cfg.validate("settings")
    with pytest.raises(ValidationError, match="'3x' is not a duration"):
        ClusterConfig().set("l2announcements.leaseDuration", "3x")


def test_arp_request_and_reply_frames() -> None:
    mac, other = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
    req = arp_frame(1, other, b"\xff" * 6, other, "192.168.10.200", b"\x00" * 6, "192.168.10.240")
    assert len(req) == 42
    assert parse_request(req) == (other, "192.168.10.200", "192.168.10.240")
    reply = arp_frame(2, mac, other, mac, "192.168.10.240", other, "192.168.10.200")
    assert parse_request(reply) is None  # a reply is not a request
    assert parse_request(req[:30]) is None
