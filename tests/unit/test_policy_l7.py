"""L7 rules in resolved policy (membrane.policy.l7) and their proxy ports in the map (agent policy_sync)."""

from __future__ import annotations

import json

import pytest

from membrane.agent.policy_sync import map_rules
from membrane.datapath.maps.policy import DIR_INGRESS
from membrane.model.errors import ValidationError
from membrane.model.validate import validate_object
from membrane.policy.l7 import L7Entry, Redirect, redirects, rules_for
from membrane.policy.mapstate import verdict
from tests.unit.test_policy_resolve import CLIENT, FROM_CLIENT, OTHER, cnp, ports, resolve

GET = {"http": [{"method": "GET"}]}
POST = {"http": [{"method": "POST", "path": "/v1/request-landing"}]}
HTTP80 = Redirect("ingress", 6, 80, "http")


def test_l7_rule_implies_the_l4_allow_and_one_redirect():
    r = resolve(cnp("l7", ingress=[{"fromEndpoints": FROM_CLIENT, "toPorts": ports("80", rules=POST)}]))
    assert verdict(r, CLIENT, 6, 80) == ("allow", 0)
    assert verdict(r, CLIENT, 6, 81)[0] == "default-deny"
    assert verdict(r, OTHER, 6, 80)[0] == "default-deny"
    assert redirects(r.l7) == {HTTP80}
    assert rules_for(r.l7, HTTP80, CLIENT) == [{"method": "POST", "path": "/v1/request-landing"}]
    assert rules_for(r.l7, HTTP80, OTHER) == []  # never reaches the proxy anyway (L3 drop)


def test_same_kind_rules_are_ored_and_a_plain_allow_gives_allow_all():
    r = resolve(cnp("a", ingress=[{"fromEndpoints": FROM_CLIENT, "toPorts": ports("80", rules=POST)}])
                + cnp("b", ingress=[{"toPorts": ports("80", rules=GET)}]))
    assert sorted(json.dumps(x, sort_keys=True) for x in rules_for(r.l7, HTTP80, CLIENT)) == [
        '{"method": "GET"}', '{"method": "POST", "path": "/v1/request-landing"}']
    assert rules_for(r.l7, HTTP80, OTHER) == [{"method": "GET"}]
    r = resolve(cnp("a", ingress=[{"toPorts": ports("80", rules=POST)}])
                + cnp("b", ingress=[{"fromEndpoints": FROM_CLIENT, "toPorts": ports("80")}]))
    assert rules_for(r.l7, HTTP80, CLIENT) is None  # allow-all for the plainly allowed peer (§3.4)
    assert rules_for(r.l7, HTTP80, OTHER) == [{"method": "POST", "path": "/v1/request-landing"}]


def test_deny_still_wins_over_l7():
    r = resolve(cnp("a", ingress=[{"fromEndpoints": FROM_CLIENT, "toPorts": ports("80", rules=GET)}],
                    ingressDeny=[{"fromEndpoints": FROM_CLIENT, "toPorts": ports("80")}]))
    assert verdict(r, CLIENT, 6, 80) == ("deny", 181)
    rules = map_rules(7, r, {("ingress", 6, 80): 10001})
    assert [x.deny for x in rules if x.port == 80 and x.identity == CLIENT] == [True]


def test_mixed_kinds_on_one_port_are_an_import_error():
    with pytest.raises(ValidationError, match="port 80 has both"):
        resolve(cnp("a", egress=[{"toPorts": ports("80", rules=GET)}])
                + cnp("b", egress=[{"toPorts": ports("80", rules={"kafka": [{"topic": "t"}]})}]))


def test_map_slots_of_exactly_the_redirected_port_carry_the_proxy_port():
    r = resolve(cnp("a", ingress=[{"fromEndpoints": FROM_CLIENT, "toPorts": ports("80", rules=GET)},
                                  {"fromEndpoints": FROM_CLIENT, "toPorts": ports("81")}]))
    got = {(x.identity, x.port): x.proxy_port for x in map_rules(7, r, {("ingress", 6, 80): 10001})
           if x.direction == DIR_INGRESS}
    assert got[(CLIENT, 80)] == 10001 and got[(CLIENT, 81)] == 0
    assert all(x.proxy_port == 0 for x in map_rules(7, r))  # no proxy manager: plain L4


def test_no_l7_no_entries_and_hashable():
    r = resolve(cnp("a", ingress=[{"fromEndpoints": FROM_CLIENT, "toPorts": ports("80")}]))
    assert r.l7 == frozenset()
    e = L7Entry("ingress", 6, 80, 0, "http", ('{"method": "GET"}',))
    assert hash(e) == hash(L7Entry("ingress", 6, 80, 0, "http", ('{"method": "GET"}',)))


@pytest.mark.parametrize(("rules", "port", "want"), [
    ({"http": [{"method": "GE(T"}]}, {"port": "80", "protocol": "TCP"}, "rules.http[0].method"),
    ({"http": [{"path": "[/"}]}, {"port": "80", "protocol": "TCP"}, "rules.http[0].path"),
    ({"http": [{"host": "*x"}]}, {"port": "80", "protocol": "TCP"}, "rules.http[0].host"),
    ({"http": [{}]}, {"port": "80", "protocol": "UDP"}, "ports[0].protocol"),
    ({"http": [{}], "kafka": [{}]}, {"port": "80", "protocol": "TCP"}, "rules"),
])
def test_bad_l7_input_is_rejected_with_its_field_path(rules, port, want):
    obj = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "p", "namespace": "x"},
           "spec": {"endpointSelector": {}, "ingress": [{"toPorts": [{"ports": [port], "rules": rules}]}]}}
    with pytest.raises(ValidationError) as err:
        validate_object(obj, "test")
    assert f"spec.ingress[0].toPorts[0].{want}" in str(err.value)
