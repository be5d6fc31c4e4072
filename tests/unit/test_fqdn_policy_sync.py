"""toFQDNs through the agent's policy controller on the in-memory datapath: a DNS answer the proxy lets
through gives the selected IPs identities whose policy-map entries are in before the ipcache maps the
IPs to them, all before ``learn_dns`` returns (the proxy releases the answer after it). No root."""

from __future__ import annotations

from membrane.agent.policy_sync import PolicySync
from membrane.datapath.fake import FakeDatapath
from membrane.datapath.maps.policy import DIR_EGRESS, PolicySlot
from membrane.endpoint.model import Endpoint
from membrane.fqdn.identities import FQDN_MIN_IDENTITY
from membrane.identity.allocator import encode_labels
from membrane.model.validate import validate_object
from tests.unit.test_agent_reconcile import IDS_PREFIX, WEB_LABELS, Clock, FakeMirror, Net

TO_ONE = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
          "metadata": {"name": "to-one", "namespace": "default"},
          "spec": {"endpointSelector": {"matchLabels": {"app": "web"}},
                   "egress": [{"toFQDNs": [{"matchName": "One.One.One.One"}, {"matchPattern": "*.cilium.io"}],
                               "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}]}]}}


def agent() -> tuple[PolicySync, Net, list[dict[str, int]], list[set[PolicySlot]]]:
    dp = FakeDatapath()
    web = Endpoint(7, "c7", "eth0", "ns", "default", "web", "10.0.1.5", "lxc7", 5, "", "", identity=300)
    net = Net(dp, [web])
    policies = FakeMirror()
    policies.put("/cnp/to-one", TO_ONE)
    seen_prefixes: list[dict[str, int]] = []
    slots_at_publish: list[set[PolicySlot]] = []
    sync: PolicySync

    def publish() -> None:  # the ipcache write: record what the map held at that moment
        seen_prefixes.append(dict(sync.cidr_prefixes()))
        slots_at_publish.append(set(dp.policy.slots))

    sync = PolicySync(net, [policies], FakeMirror({f"{IDS_PREFIX}id/300": encode_labels(WEB_LABELS)}),  # type: ignore[arg-type, list-item]
                      IDS_PREFIX, lambda: "default", "default", lambda ns, name: None, publish_ipcache=publish,
                      clock=Clock())
    sync.sync()
    return sync, net, seen_prefixes, slots_at_publish


def egress_identities(net: Net) -> set[int]:
    return {s.identity for s in net.datapath.policy.slots if s.ep_id == 7 and s.direction == DIR_EGRESS}


def test_the_policy_is_valid():
    validate_object(TO_ONE, "to-one.yaml")


def test_before_any_answer_the_selectors_select_nothing_and_egress_is_enforced():
    sync, net, _p, _s = agent()
    assert egress_identities(net) == set()
    assert net.flags["c7"] == (False, True)
    assert sync.repo.fqdn_keys() == {"one.one.one.one", "*.cilium.io"}


def test_an_answer_puts_map_entries_then_the_ipcache_entry_before_learn_dns_returns():
    sync, net, prefixes, slots = agent()
    sync.learn_dns(7, "one.one.one.one.", ["1.1.1.1", "1.0.0.1"], ttl=300, now=10.0)
    n1, n2 = sync.fqdn.identity_of("1.1.1.1"), sync.fqdn.identity_of("1.0.0.1")
    assert n1 is not None and n2 is not None and n1 >= FQDN_MIN_IDENTITY
    assert sync.cidr_prefixes() == {"1.1.1.1/32": n1, "1.0.0.1/32": n2}
    assert egress_identities(net) == {n1, n2}
    assert PolicySlot(7, DIR_EGRESS, n1, 6, 80, 16) in net.datapath.policy.slots
    # the first ipcache write that names the IPs found their allows already in the map
    first = next(i for i, p in enumerate(prefixes) if "1.1.1.1/32" in p)
    assert PolicySlot(7, DIR_EGRESS, n1, 6, 80, 16) in slots[first]


def test_a_name_no_selector_matches_stays_world():
    sync, net, _p, _s = agent()
    sync.learn_dns(7, "ipinfo.io", ["34.117.59.81"], ttl=300, now=10.0)
    assert sync.cidr_prefixes() == {} and egress_identities(net) == set()
    sync.learn_dns(7, "docs.cilium.io", ["104.198.14.52"], ttl=300, now=10.0)
    assert set(sync.cidr_prefixes()) == {"104.198.14.52/32"}


def test_expiry_takes_the_ip_out_of_the_map_and_the_ipcache():
    sync, net, _p, _s = agent()
    sync.learn_dns(7, "one.one.one.one", ["1.1.1.1"], ttl=30, now=10.0)
    assert sync.expire_dns(now=39.0) == 0 and sync.cidr_prefixes() != {}
    assert sync.expire_dns(now=41.0, in_use=lambda ip: ip == "1.1.1.1") == 0  # a connection still uses it
    assert sync.cidr_prefixes() != {}
    assert sync.expire_dns(now=42.0) == 1
    assert sync.cidr_prefixes() == {} and egress_identities(net) == set()


def test_deleting_the_policy_releases_the_identities():
    sync, net, _p, _s = agent()
    sync.learn_dns(7, "one.one.one.one", ["1.1.1.1"], ttl=300, now=10.0)
    sync.policy_mirrors[0].delete("/cnp/to-one")  # type: ignore[attr-defined]
    sync.sync()
    assert sync.cidr_prefixes() == {} and net.datapath.policy.slots == {}


def test_cleaning_the_cache_takes_the_learned_ips_out():
    sync, net, _p, _s = agent()
    sync.learn_dns(7, "one.one.one.one", ["1.1.1.1"], ttl=300, now=10.0)
    assert sync.clean_dns() == 1
    assert sync.cidr_prefixes() == {} and egress_identities(net) == set()
