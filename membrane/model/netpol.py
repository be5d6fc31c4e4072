"""Kubernetes NetworkPolicy (networking.k8s.io/v1): validation with the API server's defaults.

Defaults: ``policyTypes`` is ``[Ingress]`` plus ``Egress`` when egress rules are present, and a
port's protocol is TCP.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from membrane.model import names
from membrane.model.fields import (
    Fields,
    as_int,
    as_str,
    check_cidr,
    check_name,
    duplicate,
    forbidden,
    in_range,
    invalid,
    missing,
    unsupported,
)
from membrane.model.labels import check_selector

NETWORK_POLICY_SPEC_FIELDS = ("podSelector", "policyTypes", "ingress", "egress")
PEER_FIELDS = ("podSelector", "namespaceSelector", "ipBlock")
PORT_FIELDS = ("protocol", "port", "endPort")
POLICY_TYPES = ("Ingress", "Egress")
PROTOCOLS = ("TCP", "UDP", "SCTP")


def _check_ip_block(data: Any, path: str) -> None:
    f = Fields(data, path, ("cidr", "except"))
    cidr = check_cidr(f.string("cidr", required=True) or "", f.at("cidr"))
    outer = ipaddress.ip_network(cidr, strict=False)
    for epath, value in f.each("except"):
        inner = ipaddress.ip_network(check_cidr(as_str(value, epath), epath), strict=False)
        if inner.version != outer.version or not inner.subnet_of(outer) or inner == outer:
            raise invalid(epath, value, "must be a strict subset of `cidr`")


def _check_peer(data: Any, path: str) -> None:
    f = Fields(data, path, PEER_FIELDS)
    selectors = [k for k in ("podSelector", "namespaceSelector") if f.has(k)]
    if f.has("ipBlock"):
        if selectors:
            raise forbidden(path, "may not specify both ipBlock and another peer")
        _check_ip_block(f.raw("ipBlock"), f.at("ipBlock"))
    elif not selectors:
        raise missing(path, "must specify a peer (podSelector, namespaceSelector or ipBlock)")
    for key in selectors:
        check_selector(f.raw(key), f.at(key))


def _check_port(data: Any, path: str) -> None:
    f = Fields(data, path, PORT_FIELDS)
    f.choice("protocol", PROTOCOLS, default="TCP")
    port = f.raw("port")
    number: int | None = None
    if isinstance(port, str):
        if port.isdigit():
            raise invalid(f.at("port"), port, "must contain at least one letter (a-z); use a number")
        check_name(port, f.at("port"), names.iana_svc_name_error)
    elif port is not None:
        number = in_range(as_int(port, f.at("port")), 1, 65535, f.at("port"))
    if f.has("endPort"):
        end = as_int(f.raw("endPort"), f.at("endPort"))
        if port is None:
            raise forbidden(f.at("endPort"), "may not be specified when `port` is not specified")
        if number is None:
            raise forbidden(f.at("endPort"), "may not be specified when `port` is non-numeric")
        in_range(end, 1, 65535, f.at("endPort"))
        if end < number:
            raise invalid(f.at("endPort"), end, "must be greater than or equal to `port`")


def check_network_policy(obj: dict[str, Any]) -> None:
    """Validate a NetworkPolicy's spec in place (metadata is checked by the caller)."""
    f = Fields({} if obj.get("spec") is None else obj["spec"], "spec", NETWORK_POLICY_SPEC_FIELDS)
    obj["spec"] = f.data
    check_selector(f.mapping("podSelector", required=True), f.at("podSelector"))
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for rpath, rule in f.each(direction):
            r = Fields(rule, rpath, (peers_key, "ports"))
            for ppath, peer in r.each(peers_key):
                _check_peer(peer, ppath)
            for ppath, port in r.each("ports"):
                _check_port(port, ppath)
    types = f.strings("policyTypes")
    if not types:  # absent or empty: defaulted like the API server does
        f.set("policyTypes", ["Ingress", "Egress"] if f.raw("egress") else ["Ingress"])
        return
    for i, value in enumerate(types):
        tpath = f"{f.at('policyTypes')}[{i}]"
        if value not in POLICY_TYPES:
            raise unsupported(tpath, value, POLICY_TYPES)
        if value in types[:i]:
            raise duplicate(tpath, value)
