"""Parsing of IPv4 CIDRs and addresses for IPAM, with errors that say where and why."""

from __future__ import annotations

import ipaddress

from membrane.model.errors import ValidationError


def parse_network(text: object, where: str, *, strict: bool = True) -> ipaddress.IPv4Network:
    """An IPv4 network from ``a.b.c.d/len``; ``strict`` rejects host bits set (a pod CIDR must be a network).

    With ``strict=False`` an interface address such as ``192.168.10.2/24`` stands for its network.
    """
    if not isinstance(text, str):
        raise ValidationError(f"expected a CIDR string such as 10.0.0.0/24, got {type(text).__name__} {text!r}", where)
    value = text.strip()
    if "/" not in value:
        raise ValidationError(f"{text!r} is not a CIDR: missing prefix length (e.g. {value}/24)", where)
    try:
        net = ipaddress.ip_network(value, strict=strict)
    except ValueError as exc:
        raise ValidationError(f"{text!r} is not a valid CIDR: {exc}", where) from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise ValidationError(f"{text!r}: only IPv4 is supported", where)
    return net


def parse_address(text: object, where: str) -> ipaddress.IPv4Address:
    """An IPv4 address in dotted-quad form."""
    if not isinstance(text, str):
        raise ValidationError(f"expected an IPv4 address string, got {type(text).__name__} {text!r}", where)
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        raise ValidationError(f"{text!r} is not a valid IP address", where) from None
    if not isinstance(addr, ipaddress.IPv4Address):
        raise ValidationError(f"{text!r}: only IPv4 is supported", where)
    return addr
