"""``serverNames`` in policy: validated at apply, a ``tls`` redirect of its port (the SNI proxy) with one
rule per name, L7-filtered in ``policy simulate``; with ``rules:`` next to it the port keeps its L7 kind."""

from __future__ import annotations

import pytest

from membrane.model.errors import ValidationError
from membrane.model.validate import validate_object
from membrane.policy.l7 import TLS_KIND, Redirect, redirects, rules_for
from membrane.policy.mapstate import verdict
from tests.unit.test_policy_resolve import CLIENT, FROM_CLIENT, OTHER, cnp, ports, resolve

TLS443 = Redirect("egress", 6, 443, TLS_KIND)


def test_server_names_redirect_their_port_with_one_rule_per_name():
    r = resolve(cnp("sni", egress=[{"toPorts": ports("443", serverNames=["one.one.one.one", "*.cilium.io"])}]))
    assert verdict(r, OTHER, 6, 443, "egress") == ("allow", 0)  # the L4 allow comes with it
    assert verdict(r, OTHER, 6, 80, "egress")[0] == "default-deny"
    assert redirects(r.l7) == {TLS443}
    assert rules_for(r.l7, TLS443, OTHER) == [{"serverName": "one.one.one.one"}, {"serverName": "*.cilium.io"}]


def test_protocol_any_redirects_tcp_only():
    r = resolve(cnp("sni", egress=[{"toPorts": ports("443", protocol="ANY", serverNames=["a.example"])}]))
    assert redirects(r.l7) == {TLS443}


def test_a_plain_allow_of_the_port_gives_that_peer_allow_all():
    r = resolve(cnp("a", egress=[{"toPorts": ports("443", serverNames=["a.example"])}])
                + cnp("b", egress=[{"toEndpoints": FROM_CLIENT, "toPorts": ports("443")}]))
    assert rules_for(r.l7, TLS443, CLIENT) is None
    assert rules_for(r.l7, TLS443, OTHER) == [{"serverName": "a.example"}]


def test_server_names_with_http_rules_keep_the_http_proxy():
    r = resolve(cnp("a", egress=[{"toPorts": ports("443", serverNames=["a.example"], rules={"http": [{}]})}]))
    assert {x.kind for x in redirects(r.l7)} == {"http"}


@pytest.mark.parametrize("name, reason", [
    ("", "must be 1-255 characters"),
    ("a" * 256, "must be 1-255 characters"),
    ("bad name.example", "may only contain"),
    ("tls://a.example", "may only contain"),
])
def test_bad_server_names_are_refused_with_their_path(name: str, reason: str):
    obj = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "p", "namespace": "x"},
           "spec": {"endpointSelector": {}, "egress": [{"toPorts": ports("443", serverNames=["ok.example", name])}]}}
    with pytest.raises(ValidationError) as err:
        validate_object(obj, "test")
    assert "spec.egress[0].toPorts[0].serverNames[1]" in str(err.value) and reason in str(err.value)
