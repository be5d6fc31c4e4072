"""BGP control plane v2 resources (``cilium.io/v2``, or ``v2alpha1`` as in Cilium 1.16/1.17): validation.

CiliumBGPClusterConfig (instances with ``localASN`` and ``peers``), CiliumBGPPeerConfig (transport,
timers, graceful restart, eBGP multihop, families with an ``advertisements`` selector),
CiliumBGPAdvertisement (``PodCIDR``, ``CiliumPodIPPool``, ``Service`` with LoadBalancerIP/ClusterIP/
ExternalIP, ``Interface``; communities and local preference) and CiliumBGPNodeConfigOverride. Ranges
and enums are Cilium's CRD rules, so a peer with an invalid ASN or an advertisement of an unknown type
is refused at apply with the field. What they ask for is computed in membrane.bgp; each agent runs the speaker.
"""

from __future__ import annotations

import re
from typing import Any

from membrane.model.fields import Fields, check_ip, duplicate, forbidden, index, invalid, missing
from membrane.model.labels import check_selector

ASN_MAX = 2**32 - 1
ADVERTISEMENT_TYPES = ("PodCIDR", "CiliumPodIPPool", "Service", "Interface")
SERVICE_ADDRESSES = ("LoadBalancerIP", "ClusterIP", "ExternalIP")
WELL_KNOWN_COMMUNITIES = ("internet", "planned-shut", "accept-own", "route-filter-translated-v4",
                          "route-filter-v4", "route-filter-translated-v6", "route-filter-v6", "llgr-stale",
                          "no-llgr", "blackhole", "no-export", "no-advertise", "no-export-subconfed", "no-peer")
_STANDARD = re.compile(r"^([0-9]+|[0-9]{1,5}:[0-9]{1,5})$")
_LARGE = re.compile(r"^[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$")


def _named_items(f: Fields, key: str, *, required: bool = False, max_items: int | None = None) -> list[tuple[str, Any]]:
    items = f.each(key, required=required, non_empty=required, max_items=max_items)
    seen: set[str] = set()
    for path, item in items:
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and name in seen:
            raise duplicate(f"{path}.name", name)
        if isinstance(name, str):
            seen.add(name)
    return items


def check_bgp_cluster_config(obj: dict[str, Any]) -> None:
    f = Fields({} if obj.get("spec") is None else obj["spec"], "spec", ("nodeSelector", "bgpInstances"))
    obj["spec"] = f.data
    if f.has("nodeSelector"):
        check_selector(f.raw("nodeSelector"), f.at("nodeSelector"))
    for path, item in _named_items(f, "bgpInstances", required=True, max_items=16):
        inst = Fields(item, path, ("name", "localASN", "localPort", "peers"))
        inst.string("name", required=True)
        inst.integer("localASN", lo=1, hi=ASN_MAX, int64=True)
        inst.integer("localPort", lo=1, hi=65535)
        for ppath, peer in _named_items(inst, "peers"):
            p = Fields(peer, ppath, ("name", "peerAddress", "peerASN", "autoDiscovery", "peerConfigRef"))
            p.string("name", required=True)
            address = p.string("peerAddress")
            if address:
                check_ip(address, p.at("peerAddress"))
            p.integer("peerASN", lo=0, hi=ASN_MAX, int64=True, default=0)
            if p.has("autoDiscovery"):
                auto = Fields(p.raw("autoDiscovery"), p.at("autoDiscovery"), ("mode", "defaultGateway"))
                auto.choice("mode", ("DefaultGateway",), required=True)
                gw = auto.mapping("defaultGateway", required=True)
                Fields(gw, auto.at("defaultGateway"), ("addressFamily",)).choice(
                    "addressFamily", ("ipv4", "ipv6"), required=True)
            elif not address:
                raise missing(ppath, "one of `peerAddress` or `autoDiscovery` must be set")
            if p.has("peerConfigRef"):
                ref = Fields(p.raw("peerConfigRef"), p.at("peerConfigRef"), ("name", "group", "kind"))
                ref.string("name", required=True)
                ref.string("group")
                ref.string("kind")


def check_bgp_peer_config(obj: dict[str, Any]) -> None:
    known = ("transport", "timers", "authSecretRef", "gracefulRestart", "ebgpMultihop", "families")
    f = Fields({} if obj.get("spec") is None else obj["spec"], "spec", known)
    obj["spec"] = f.data
    if f.has("transport"):
        t = Fields(f.raw("transport"), f.at("transport"), ("peerPort", "sourceInterface", "localPort"))
        t.integer("peerPort", lo=1, hi=65535, default=179)
        t.integer("localPort", lo=1, hi=65535)
        t.string("sourceInterface")
    if f.has("timers"):
        t = Fields(f.raw("timers"), f.at("timers"),
                   ("connectRetryTimeSeconds", "holdTimeSeconds", "keepAliveTimeSeconds"))
        t.integer("connectRetryTimeSeconds", lo=1, hi=2**31 - 1, default=120)
        hold = t.integer("holdTimeSeconds", lo=3, hi=65535, default=90)
        keepalive = t.integer("keepAliveTimeSeconds", lo=1, hi=65535, default=30)
        if hold is not None and keepalive is not None and keepalive > hold:
            raise invalid(t.at("keepAliveTimeSeconds"), keepalive,
                          f"must not be greater than holdTimeSeconds ({hold})")
    f.string("authSecretRef")
    if f.has("gracefulRestart"):
        g = Fields(f.raw("gracefulRestart"), f.at("gracefulRestart"), ("enabled", "restartTimeSeconds"))
        g.boolean("enabled")
        g.integer("restartTimeSeconds", lo=1, hi=4095, default=120)
    f.integer("ebgpMultihop", lo=1, hi=255, default=1)
    for path, item in f.each("families"):
        fam = Fields(item, path, ("afi", "safi", "advertisements"))
        fam.choice("afi", ("ipv4", "ipv6"), required=True)
        fam.choice("safi", ("unicast",), required=True)
        if fam.has("advertisements"):
            check_selector(fam.raw("advertisements"), fam.at("advertisements"))


def _check_attributes(data: Any, path: str) -> None:
    a = Fields(data, path, ("communities", "localPreference"))
    a.integer("localPreference", lo=0, hi=2**32 - 1, int64=True)
    if not a.has("communities"):
        return
    c = Fields(a.raw("communities"), a.at("communities"), ("standard", "wellKnown", "large"))
    for i, value in enumerate(c.strings("standard") or []):
        if not _STANDARD.match(value) or _too_big(value, 16 if ":" in value else 32):
            raise invalid(index(c.at("standard"), i), value, "must be a 32-bit number or two 16-bit numbers, as 65000:100")
    for i, value in enumerate(c.strings("wellKnown") or []):
        if value not in WELL_KNOWN_COMMUNITIES:
            raise invalid(index(c.at("wellKnown"), i), value, f"unknown well-known community "
                          f"(one of {', '.join(WELL_KNOWN_COMMUNITIES)})")
    for i, value in enumerate(c.strings("large") or []):
        if not _LARGE.match(value) or _too_big(value, 32):
            raise invalid(index(c.at("large"), i), value, "must be three 32-bit numbers, as 65000:1:2")


def _too_big(value: str, bits: int) -> bool:
    return any(int(part) >= 2**bits for part in value.split(":"))


def check_bgp_advertisement(obj: dict[str, Any]) -> None:
    f = Fields({} if obj.get("spec") is None else obj["spec"], "spec", ("advertisements",))
    obj["spec"] = f.data
    for path, item in f.each("advertisements", required=True, non_empty=True):
        adv = Fields(item, path, ("advertisementType", "service", "selector", "interface", "attributes"))
        kind = adv.choice("advertisementType", ADVERTISEMENT_TYPES, required=True)
        if adv.has("selector"):
            check_selector(adv.raw("selector"), adv.at("selector"))
        if adv.has("attributes"):
            _check_attributes(adv.raw("attributes"), adv.at("attributes"))
        if kind == "Service":
            svc = adv.mapping("service", required=True)
            s = Fields(svc, adv.at("service"), ("addresses", "aggregationLengthIPv4", "aggregationLengthIPv6"))
            addresses = s.strings("addresses", required=True) or []
            if not addresses:
                raise missing(s.at("addresses"))
            for i, value in enumerate(addresses):
                if value not in SERVICE_ADDRESSES:
                    raise invalid(index(s.at("addresses"), i), value,
                                  f"supported values: {', '.join(repr(v) for v in SERVICE_ADDRESSES)}")
            s.integer("aggregationLengthIPv4", lo=0, hi=32)
            s.integer("aggregationLengthIPv6", lo=0, hi=128)
        elif adv.has("service"):
            raise forbidden(adv.at("service"), "may only be set when advertisementType is 'Service'")
        if kind == "Interface":
            iface = Fields(adv.mapping("interface", required=True), adv.at("interface"), ("name",))
            iface.string("name", required=True)


def check_bgp_node_config_override(obj: dict[str, Any]) -> None:
    f = Fields({} if obj.get("spec") is None else obj["spec"], "spec", ("bgpInstances",))
    obj["spec"] = f.data
    for path, item in _named_items(f, "bgpInstances", required=True):
        inst = Fields(item, path, ("name", "routerID", "localPort", "localASN", "peers"))
        inst.string("name", required=True)
        router_id = inst.string("routerID")
        if router_id:
            check_ip(router_id, inst.at("routerID"))
            if ":" in router_id:
                raise invalid(inst.at("routerID"), router_id, "must be an IPv4 address")
        inst.integer("localPort", lo=1, hi=65535)
        inst.integer("localASN", lo=1, hi=ASN_MAX, int64=True)
        for ppath, peer in _named_items(inst, "peers"):
            p = Fields(peer, ppath, ("name", "localAddress", "localPort"))
            p.string("name", required=True)
            local = p.string("localAddress")
            if local:
                check_ip(local, p.at("localAddress"))
            p.integer("localPort", lo=1, hi=65535)
