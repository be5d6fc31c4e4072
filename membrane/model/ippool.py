"""CiliumLoadBalancerIPPool (``cilium.io/v2`` and ``v2alpha1``): validation with Cilium's rules.

``spec.blocks[]`` holds ``{cidr}`` or ``{start, stop?}`` (stop omitted: the single IP ``start``);
``allowFirstLastIPs`` is ``Yes``/``No`` (unset reads as Yes, Cilium ≥ 1.16); ``serviceSelector`` is a
label selector (nil: every Service); ``disabled`` stops new allocations. Blocks of one pool that
overlap are refused here; pools overlapping *each other* are legal objects that LB-IPAM marks as
conflicting in their status (membrane.lbipam.pools), as Cilium does.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from membrane.model.fields import Fields, forbidden, invalid, missing
from membrane.model.labels import check_selector

POOL_SPEC_FIELDS = ("blocks", "allowFirstLastIPs", "serviceSelector", "disabled", "cidrs")
BLOCK_FIELDS = ("cidr", "start", "stop")
YES_NO = ("Yes", "No", "yes", "no")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def block_range(block: dict[str, Any]) -> tuple[Address, Address]:
    """First and last address of a validated block (a CIDR's network/broadcast included)."""
    if "cidr" in block:
        net = ipaddress.ip_network(block["cidr"], strict=False)
        return net.network_address, net.broadcast_address
    start = ipaddress.ip_address(block["start"])
    return start, ipaddress.ip_address(block.get("stop") or block["start"])


def _check_block(item: Any, path: str) -> dict[str, Any]:
    b = Fields(item, path, BLOCK_FIELDS)
    cidr, start, stop = b.string("cidr"), b.string("start"), b.string("stop")
    if cidr:
        if start or stop:
            raise forbidden(b.at("start" if start else "stop"), "may not be set together with `cidr`")
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise invalid(b.at("cidr"), cidr, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)") from None
        if "/" not in cidr:
            raise invalid(b.at("cidr"), cidr, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")
        return b.data
    if not start:
        raise missing(path, "one of `cidr` or `start` must be set")
    lo = _ip(start, b.at("start"))
    if stop:
        hi = _ip(stop, b.at("stop"))
        if hi.version != lo.version:
            raise invalid(b.at("stop"), stop, f"must be of the same IP family as start {start}")
        if hi < lo:
            raise invalid(b.at("stop"), stop, f"must not be lower than start {start}")
    return b.data


def _ip(value: str, path: str) -> Address:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)") from None


def check_ip_pool(obj: dict[str, Any]) -> None:
    """Validate a pool's spec in place."""
    f = Fields({} if obj.get("spec") is None else obj["spec"], "spec", POOL_SPEC_FIELDS)
    obj["spec"] = f.data
    if f.has("cidrs"):  # v2alpha1's old name for blocks (Cilium ≤ 1.14): accepted as blocks
        if f.has("blocks"):
            raise forbidden(f.at("cidrs"), "may not be set together with `blocks`")
        f.set("blocks", f.raw("cidrs"))
        del f.data["cidrs"]
    blocks = [_check_block(item, path) for path, item in f.each("blocks", required=True, non_empty=True)]
    ranges = [block_range(b) for b in blocks]
    for i, (lo, hi) in enumerate(ranges):
        for j in range(i):
            olo, ohi = ranges[j]
            if lo.version == olo.version and lo <= ohi and olo <= hi:
                raise invalid(f"{f.at('blocks')}[{i}]", _shown(blocks[i]),
                              f"overlaps spec.blocks[{j}] ({_shown(blocks[j])}) of the same pool")
    f.choice("allowFirstLastIPs", YES_NO)
    if f.has("serviceSelector"):
        check_selector(f.raw("serviceSelector"), f.at("serviceSelector"))
    f.boolean("disabled")


def _shown(block: dict[str, Any]) -> str:
    if "cidr" in block:
        return str(block["cidr"])
    stop = block.get("stop")
    return f"{block['start']}-{stop}" if stop and stop != block["start"] else str(block["start"])
