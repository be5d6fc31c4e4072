"""IPv4 routes we own, through rtnetlink.

Our routes carry the rtnetlink protocol number :data:`RTPROT_MEMBRANE`, so listing, pruning and
deleting only ever see (and touch) routes Membrane made. Every function acts on the calling
thread's namespace, or on ``netns`` when given.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from pyroute2.netlink.exceptions import NetlinkError

from membrane.datapath.linux.errors import NetError
from membrane.datapath.linux.links import check_ifname, netlink
from membrane.datapath.linux.netns import in_netns
from membrane.datapath.linux.rtnl import Rtnl, RtnlError
from membrane.model.errors import ValidationError

RTPROT_MEMBRANE = 211  # unused by iproute2's rt_protos; `ip route show proto 211`
MAIN_TABLE = 254
RTNH_F_ONLINK = 4
RT_SCOPE_NOWHERE = 255
SCOPES = {"universe": 0, "link": 253, "host": 254}
_SCOPE_NAMES = {v: k for k, v in SCOPES.items()}


@dataclass(frozen=True)
class Route:
    """One of our routes: ``dst`` is a CIDR; ``gateway`` None for on-link routes."""

    dst: str
    gateway: str | None = None
    dev: str | None = None
    scope: str = "universe"
    onlink: bool = False


class RouteLike(Protocol):
    """Anything with a route's fields (e.g. membrane.endpoint.routing.RouteSpec)."""

    dst: str
    gateway: str | None
    dev: str | None
    scope: str


def _cidr(dst: str) -> str:
    text = "0.0.0.0/0" if dst == "default" else dst
    try:
        return str(ipaddress.IPv4Network(text if "/" in text else f"{text}/32", strict=True))
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"route destination {dst!r}: {exc}") from None


def _route(spec: str | RouteLike, gateway: str | None, dev: str | None, scope: str | None, onlink: bool) -> Route:
    if isinstance(spec, str):
        route = Route(_cidr(spec), gateway, dev, scope or ("universe" if gateway else "link"), onlink)
    else:
        route = Route(_cidr(spec.dst), spec.gateway, spec.dev, spec.scope or "universe", getattr(spec, "onlink", False))
    where = f"route {route.dst}"
    if route.gateway is not None:
        try:
            ipaddress.IPv4Address(route.gateway)
        except ValueError as exc:
            raise ValidationError(f"{where}: gateway {route.gateway!r}: {exc}") from None
    if route.dev is not None:
        check_ifname(route.dev, f"{where}: device")
    if route.gateway is None and route.dev is None:
        raise ValidationError(f"{where}: needs a gateway or a device")
    if route.scope not in SCOPES:
        raise ValidationError(f"{where}: scope {route.scope!r} must be one of {', '.join(SCOPES)}")
    if route.onlink and (route.gateway is None or route.dev is None):
        raise ValidationError(f"{where}: onlink needs both a gateway and a device")
    return route


def _request(ipr: Any, route: Route, what: str) -> dict[str, Any]:
    net = ipaddress.IPv4Network(route.dst)
    request: dict[str, Any] = {
        "dst": str(net.network_address),
        "dst_len": net.prefixlen,
        "table": MAIN_TABLE,
        "proto": RTPROT_MEMBRANE,
        "scope": SCOPES[route.scope],
    }
    if route.gateway is not None:
        request["gateway"] = route.gateway
    if route.dev is not None:
        found = ipr.link_lookup(ifname=route.dev)
        if not found:
            raise NetError(errno.ENODEV, f"{what}: no device {route.dev}")
        request["oif"] = found[0]
    if route.onlink:
        request["flags"] = RTNH_F_ONLINK
    return request


def replace_route(
    spec: str | RouteLike, *, gateway: str | None = None, dev: str | None = None, scope: str | None = None,
    onlink: bool = False, netns: str | None = None, ifindex: int | None = None,
) -> Route:
    """Create or replace the route to ``spec`` (a CIDR, or an object with dst/gateway/dev/scope).
    ``ifindex``: the device's index, when the caller knows it (a pod's ADD): no lookup by name, and
    the request packed by membrane.datapath.linux.rtnl rather than pyroute2 (issue 16: CPU per pod)."""
    route = _route(spec, gateway, dev, scope, onlink)
    what = f"replace route {route.dst}"

    def change() -> None:
        if ifindex is not None:
            net = ipaddress.IPv4Network(route.dst)
            try:
                with Rtnl() as rtnl:
                    rtnl.replace_route(str(net.network_address), net.prefixlen, ifindex, gateway=route.gateway,
                                       scope=SCOPES[route.scope], onlink=route.onlink, proto=RTPROT_MEMBRANE)
            except RtnlError as exc:
                raise NetError(exc.errno or errno.EIO, what) from None
            return
        with netlink(what) as ipr:
            ipr.route("replace", **_request(ipr, route, what))

    in_netns(netns, change)
    return route


def replace_endpoint_route(ip: str, dev: str, netns: str | None = None) -> Route:
    """``<ip>/32 dev <dev> scope link``: a local pod behind its host-side veth."""
    return replace_route(ip, dev=dev, scope="link", netns=netns)


def replace_gateway_route(
    cidr: str, gateway: str, dev: str | None = None, onlink: bool = False, netns: str | None = None
) -> Route:
    """``<cidr> via <gateway> [dev <dev>] [onlink]``: e.g. another node's pod CIDR via its node IP."""
    return replace_route(cidr, gateway=gateway, dev=dev, scope="universe", onlink=onlink, netns=netns)


def delete_route(
    spec: str | RouteLike, *, gateway: str | None = None, dev: str | None = None, netns: str | None = None
) -> bool:
    """Delete our route to ``spec`` (matching gateway/device when given); False if none."""
    if isinstance(spec, str):
        dst, gw, device = _cidr(spec), gateway, dev
    else:
        dst, gw, device = _cidr(spec.dst), spec.gateway, spec.dev
    what = f"delete route {dst}"

    def change() -> bool:
        with netlink(what) as ipr:
            net = ipaddress.IPv4Network(dst)
            # scope "nowhere" matches a route of any scope, as `ip route del` does
            request: dict[str, Any] = {"dst": str(net.network_address), "dst_len": net.prefixlen,
                                       "table": MAIN_TABLE, "proto": RTPROT_MEMBRANE, "scope": RT_SCOPE_NOWHERE}
            if gw is not None:
                request["gateway"] = gw
            if device is not None:
                found = ipr.link_lookup(ifname=device)
                if not found:
                    return False  # the device went away and took the route with it
                request["oif"] = found[0]
            try:
                ipr.route("del", **request)
            except NetlinkError as exc:
                if exc.code in (errno.ESRCH, errno.ENOENT):
                    return False
                raise
            return True

    return in_netns(netns, change)


def list_routes(netns: str | None = None, *, gateway_only: bool = False) -> list[Route]:
    """Our IPv4 routes in the main table, sorted by destination (``gateway_only``: those with a gateway)."""

    def query() -> list[Route]:
        with netlink("list routes") as ipr:
            msgs = [msg for msg in ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE)
                    if msg["proto"] == RTPROT_MEMBRANE and msg.get_attr("RTA_TABLE", msg["table"]) == MAIN_TABLE
                    and (not gateway_only or msg.get_attr("RTA_GATEWAY"))]
            if gateway_only:  # [agent1k] the node routes' few devices, not a dump of every link (a veth per pod)
                names = {i: ipr.get_links(i)[0].get_attr("IFLA_IFNAME")
                         for i in {msg.get_attr("RTA_OIF") for msg in msgs} if i}
            else:
                names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            found = []
            for msg in msgs:
                dst = f"{msg.get_attr('RTA_DST') or '0.0.0.0'}/{msg['dst_len']}"
                oif = msg.get_attr("RTA_OIF")
                found.append(Route(
                    dst=dst,
                    gateway=msg.get_attr("RTA_GATEWAY"),
                    dev=names.get(oif) if oif else None,
                    scope=_SCOPE_NAMES.get(msg["scope"], str(msg["scope"])),
                    onlink=bool(msg["flags"] & RTNH_F_ONLINK),
                ))
            return sorted(found, key=lambda r: (ipaddress.IPv4Network(r.dst), r.gateway or "", r.dev or ""))

    return in_netns(netns, query)


def route_exists(
    spec: str | RouteLike, *, gateway: str | None = None, dev: str | None = None, netns: str | None = None
) -> bool:
    """Is there a route of ours to ``spec`` (with that gateway/device when given)?"""
    if isinstance(spec, str):
        dst, gw, device = _cidr(spec), gateway, dev
    else:
        dst, gw, device = _cidr(spec.dst), spec.gateway, spec.dev
    return any(
        r.dst == dst and (gw is None or r.gateway == gw) and (device is None or r.dev == device)
        for r in list_routes(netns)
    )


def prune_routes(keep: Iterable[str], netns: str | None = None) -> list[Route]:
    """Delete our routes whose destination is not in ``keep`` (CIDRs); returns what went."""
    wanted = {_cidr(dst) for dst in keep}
    removed = []
    for route in list_routes(netns):
        if route.dst not in wanted:
            delete_route(route.dst, gateway=route.gateway, dev=route.dev, netns=netns)
            removed.append(route)
    return removed
