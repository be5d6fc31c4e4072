"""BGP control plane v2 resources validate as Cilium's CRDs do: the documented examples pass with
Cilium's defaults, bad ASNs, unknown advertisement types and the like are refused with the field."""

from __future__ import annotations

from typing import Any

import pytest

from membrane.model.errors import ValidationError
from membrane.model.validate import validate_object


def obj(kind: str, spec: dict[str, Any], version: str = "cilium.io/v2") -> dict[str, Any]:
    return {"apiVersion": version, "kind": kind, "metadata": {"name": "x"}, "spec": spec}


CLUSTER = {"nodeSelector": {"matchLabels": {"rack": "rack0"}},
           "bgpInstances": [{"name": "instance-65001", "localASN": 65001,
                             "peers": [{"name": "router", "peerASN": 65000, "peerAddress": "192.168.10.200",
                                        "peerConfigRef": {"name": "cilium-peer"}}]}]}
PEER = {"timers": {"holdTimeSeconds": 9, "keepAliveTimeSeconds": 3}, "ebgpMultihop": 2,
        "gracefulRestart": {"enabled": True, "restartTimeSeconds": 15},
        "families": [{"afi": "ipv4", "safi": "unicast", "advertisements": {"matchLabels": {"advertise": "bgp"}}}]}
ADVERT = {"advertisements": [
    {"advertisementType": "PodCIDR"},
    {"advertisementType": "Service", "service": {"addresses": ["LoadBalancerIP", "ClusterIP"]},
     "selector": {"matchExpressions": [{"key": "somekey", "operator": "NotIn", "values": ["never-used-value"]}]},
     "attributes": {"communities": {"standard": ["65000:100"], "wellKnown": ["no-export"], "large": ["65000:1:2"]},
                    "localPreference": 200}}]}


def test_documented_examples_validate_with_ciliums_defaults() -> None:
    cluster = validate_object(obj("CiliumBGPClusterConfig", CLUSTER, "cilium.io/v2alpha1"), "bgp.yaml")
    assert cluster["spec"]["bgpInstances"][0]["peers"][0]["peerASN"] == 65000
    peer = validate_object(obj("CiliumBGPPeerConfig", {**PEER, "transport": {}}), "bgp.yaml")
    assert peer["spec"]["transport"]["peerPort"] == 179
    assert peer["spec"]["timers"]["connectRetryTimeSeconds"] == 120
    validate_object(obj("CiliumBGPAdvertisement", ADVERT), "bgp.yaml")
    validate_object(obj("CiliumBGPNodeConfigOverride", {"bgpInstances": [
        {"name": "instance-65001", "routerID": "192.168.10.101", "localPort": 1790,
         "peers": [{"name": "router", "localAddress": "192.168.10.101"}]}]}), "bgp.yaml")


@pytest.mark.parametrize(("kind", "spec", "error"), [
    ("CiliumBGPClusterConfig", {"bgpInstances": [{"name": "a", "localASN": 0}]},
     "spec.bgpInstances[0].localASN: Invalid value: 0: must be between 1 and 4294967295, inclusive"),
    ("CiliumBGPClusterConfig", {"bgpInstances": [{"name": "a", "localASN": 65001,
                                                  "peers": [{"name": "p", "peerASN": 4294967296, "peerAddress": "10.0.0.1"}]}]},
     "spec.bgpInstances[0].peers[0].peerASN: Invalid value: 4294967296"),
    ("CiliumBGPClusterConfig", {"bgpInstances": [{"name": "a", "peers": [{"name": "p"}]}]},
     "spec.bgpInstances[0].peers[0]: Required value: one of `peerAddress` or `autoDiscovery` must be set"),
    ("CiliumBGPClusterConfig", {"bgpInstances": [{"name": "a"}, {"name": "a"}]},
     'spec.bgpInstances[1].name: Duplicate value: "a"'),
    ("CiliumBGPClusterConfig", {"bgpInstances": []}, "spec.bgpInstances: Required value"),
    ("CiliumBGPPeerConfig", {"timers": {"holdTimeSeconds": 2}}, "spec.timers.holdTimeSeconds: Invalid value: 2"),
    ("CiliumBGPPeerConfig", {"timers": {"holdTimeSeconds": 9, "keepAliveTimeSeconds": 10}},
     "spec.timers.keepAliveTimeSeconds: Invalid value: 10: must not be greater than holdTimeSeconds (9)"),
    ("CiliumBGPPeerConfig", {"ebgpMultihop": 256}, "spec.ebgpMultihop: Invalid value: 256"),
    ("CiliumBGPPeerConfig", {"families": [{"afi": "ipv5", "safi": "unicast"}]},
     'spec.families[0].afi: Unsupported value: "ipv5"'),
    ("CiliumBGPAdvertisement", {"advertisements": [{"advertisementType": "Route"}]},
     'spec.advertisements[0].advertisementType: Unsupported value: "Route"'),
    ("CiliumBGPAdvertisement", {"advertisements": [{"advertisementType": "Service"}]},
     "spec.advertisements[0].service: Required value"),
    ("CiliumBGPAdvertisement", {"advertisements": [{"advertisementType": "Service",
                                                    "service": {"addresses": ["NodeIP"]}}]},
     'spec.advertisements[0].service.addresses[0]: Invalid value: "NodeIP"'),
    ("CiliumBGPAdvertisement", {"advertisements": [{"advertisementType": "PodCIDR", "attributes": {
        "communities": {"standard": ["70000:1"]}}}]},
     'spec.advertisements[0].attributes.communities.standard[0]: Invalid value: "70000:1"'),
    ("CiliumBGPNodeConfigOverride", {"bgpInstances": [{"name": "a", "routerID": "fd00::1"}]},
     'spec.bgpInstances[0].routerID: Invalid value: "fd00::1": must be an IPv4 address'),
])
def test_bad_bgp_input_is_refused_with_the_field(kind: str, spec: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError) as exc:
        validate_object(obj(kind, spec), "bgp.yaml:doc 1")
    assert f"bgp.yaml:doc 1: {error}" in str(exc.value)
