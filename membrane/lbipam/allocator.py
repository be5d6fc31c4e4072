"""Which LoadBalancer Service gets which pool address: one pure pass over pools and Services.

``allocate(pools, services)`` recomputes the whole assignment from what the Services hold now
(``status.loadBalancer.ingress``), so nothing but the Services' status needs storing:

1. Services LB-IPAM does not handle (not ``type: LoadBalancer``, or a ``loadBalancerClass`` other than
   Cilium's) keep nothing: an address they held is released (type change) and the condition dropped.
2. Older Services first (creationTimestamp, namespace, name) keep the addresses they hold while a pool
   that selects them still contains them (a disabled or conflicting pool keeps existing allocations)
   and, when they ask for specific addresses, those are the ones asked for.
3. Then what is missing: the addresses asked for (``lbipam.cilium.io/ips``, the legacy
   ``io.cilium/lb-ipam-ips``, or the deprecated ``spec.loadBalancerIP``), or the first free address
   of the first allocating pool (by name) that selects the Service, per IP family wanted.

An address is shared only between Services with the same ``lbipam.cilium.io/sharing-key`` whose
ports do not clash, in one namespace unless both allow the other's with
``lbipam.cilium.io/sharing-cross-namespace``. Deleted Services simply hold nothing any more.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from membrane.lbipam.pools import Address, Pool

IPS_ANNOTATIONS = ("lbipam.cilium.io/ips", "io.cilium/lb-ipam-ips")
SHARING_KEY_ANNOTATIONS = ("lbipam.cilium.io/sharing-key", "io.cilium/lb-ipam-sharing-key")
CROSS_NS_ANNOTATIONS = ("lbipam.cilium.io/sharing-cross-namespace", "io.cilium/lb-ipam-sharing-cross-namespace")
CILIUM_CLASSES = ("io.cilium/bgp-control-plane", "io.cilium/l2-announcer")

SATISFIED = ("True", "satisfied", "")
NO_POOL = "There are no enabled CiliumLoadBalancerIPPools that match this service"
OUT_OF_IPS = "All enabled CiliumLoadBalancerIPPools that match this service ran out of allocatable IPs"


@dataclass(frozen=True)
class Verdict:
    """The IPAMRequestSatisfied condition of one Service."""

    status: str
    reason: str
    message: str


@dataclass
class ServiceResult:
    key: str  # namespace/name
    handled: bool  # False: LB-IPAM leaves this Service alone (its condition, if any, is removed)
    ips: list[str] = field(default_factory=list)
    verdict: Verdict | None = None


@dataclass
class Allocation:
    services: dict[str, ServiceResult]
    used: dict[str, int]  # pool name -> addresses in use


def service_key(svc: dict[str, Any]) -> str:
    meta = svc.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def handled(svc: dict[str, Any]) -> bool:
    spec = svc.get("spec") or {}
    if spec.get("type") != "LoadBalancer":
        return False
    cls = spec.get("loadBalancerClass")
    return not cls or cls in CILIUM_CLASSES


def _annotation(svc: dict[str, Any], names: Sequence[str]) -> str:
    notes = (svc.get("metadata") or {}).get("annotations") or {}
    return next((str(notes[n]) for n in names if notes.get(n)), "")


def requested_ips(svc: dict[str, Any]) -> tuple[list[Address], str]:
    """The addresses a Service asks for, and an error text if one does not parse."""
    text = _annotation(svc, IPS_ANNOTATIONS) or str((svc.get("spec") or {}).get("loadBalancerIP") or "")
    out: list[Address] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            out.append(ipaddress.ip_address(part))
        except ValueError:
            return [], f"The requested IP '{part}' is not a valid IP address"
    return out, ""


def _families(svc: dict[str, Any]) -> list[int]:
    spec = svc.get("spec") or {}
    fams = [6 if f == "IPv6" else 4 for f in spec.get("ipFamilies") or ["IPv4"]]
    if spec.get("ipFamilyPolicy") in ("PreferDualStack", "RequireDualStack"):
        return sorted(set(fams) | {4, 6})
    return fams[:1]


def _ports(svc: dict[str, Any]) -> set[tuple[int, str]]:
    return {(int(p.get("port") or 0), str(p.get("protocol") or "TCP")) for p in (svc.get("spec") or {}).get("ports") or []}


def _namespace(svc: dict[str, Any]) -> str:
    return str((svc.get("metadata") or {}).get("namespace") or "default")


def _allows(svc: dict[str, Any], ns: str) -> bool:
    allowed = {p.strip() for p in _annotation(svc, CROSS_NS_ANNOTATIONS).split(",") if p.strip()}
    return "*" in allowed or ns in allowed


def _share_refusal(svc: dict[str, Any], holders: list[dict[str, Any]]) -> str:
    """Why ``svc`` may not share an address with ``holders`` ("" if it may)."""
    key = _annotation(svc, SHARING_KEY_ANNOTATIONS)
    for other in holders:
        if not key or _annotation(other, SHARING_KEY_ANNOTATIONS) != key:
            return "different sharing key"
        ns, ons = _namespace(svc), _namespace(other)
        if ns != ons and not (_allows(svc, ons) and _allows(other, ns)):
            return "sharing across namespaces is not allowed"
        if _ports(svc) & _ports(other):
            return "ports conflict"
    return ""


class _State:
    def __init__(self, pools: Sequence[Pool]) -> None:
        self.pools = sorted(pools, key=lambda p: p.name)
        self.holders: dict[Address, list[dict[str, Any]]] = {}
        self.by_sharing_key: dict[str, list[Address]] = {}  # key -> addresses its Services hold
        self._cursors: dict[str, Iterator[Address]] = {}

    def pool_of(self, ip: Address, svc: dict[str, Any], *, allocating: bool) -> Pool | None:
        return next((p for p in self.pools if p.contains(ip) and p.selects(svc) and (p.allocates or not allocating)),
                    None)

    def take(self, ip: Address, svc: dict[str, Any]) -> None:
        self.holders.setdefault(ip, []).append(svc)
        key = _annotation(svc, SHARING_KEY_ANNOTATIONS)
        if key and ip not in self.by_sharing_key.setdefault(key, []):
            self.by_sharing_key[key].append(ip)

    def next_free(self, pool: Pool, version: int) -> Address | None:
        cursor = self._cursors.setdefault(f"{pool.name}/{version}", (
            ip for b in pool.blocks if b.version == version for ip in b.addresses()))
        for ip in cursor:
            if ip not in self.holders:
                return ip
        return None


def _order(svc: dict[str, Any]) -> tuple[str, str]:
    return (str((svc.get("metadata") or {}).get("creationTimestamp") or ""), service_key(svc))


def _held(svc: dict[str, Any]) -> list[Address]:
    out = []
    for ingress in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        try:
            out.append(ipaddress.ip_address(str(ingress.get("ip"))))
        except ValueError:
            continue
    return out


def allocate(pools: Sequence[Pool], services: Sequence[dict[str, Any]]) -> Allocation:
    """The addresses every Service should hold, with its condition (``pools``: after mark_conflicts)."""
    state = _State(pools)
    results: dict[str, ServiceResult] = {}
    ours = sorted((s for s in services if handled(s)), key=_order)
    for svc in services:
        if not handled(svc):
            results[service_key(svc)] = ServiceResult(service_key(svc), False)
    wanted: dict[str, list[Address]] = {}
    errors: dict[str, str] = {}
    for svc in ours:  # pass 1: keep what is still valid
        key = service_key(svc)
        req, err = requested_ips(svc)
        wanted[key], errors[key] = req, err
        kept = [ip for ip in dict.fromkeys(_held(svc))
                if (not req or ip in req) and state.pool_of(ip, svc, allocating=False) is not None
                and not _share_refusal(svc, state.holders.get(ip, []))]
        for ip in kept:
            state.take(ip, svc)
        results[key] = ServiceResult(key, True, [str(ip) for ip in kept])
    for svc in ours:  # pass 2: fill in what is missing
        key = service_key(svc)
        res = results[key]
        res.verdict = _fill(state, svc, res, wanted[key], errors[key])
    used: dict[str, int] = {p.name: 0 for p in pools}
    for ip in state.holders:
        for p in pools:
            if p.contains(ip):
                used[p.name] += 1
                break
    return Allocation(results, used)


def _fill(state: _State, svc: dict[str, Any], res: ServiceResult, req: list[Address], err: str) -> Verdict:
    if err:
        return Verdict("False", "invalid_request", err)
    have = [ipaddress.ip_address(i) for i in res.ips]
    if req:
        for ip in req:
            if ip in have:
                continue
            if state.pool_of(ip, svc, allocating=True) is None:
                return Verdict("False", "no_pool", f"The requested IP '{ip}' is not in any enabled "
                               "CiliumLoadBalancerIPPool that matches this service")
            why = _share_refusal(svc, state.holders.get(ip, [])) if ip in state.holders else ""
            if why:
                return Verdict("False", "already_allocated_incompatible_service",
                               f"The IP '{ip}' is already allocated to an incompatible service. Reason: {why}")
        for ip in req:
            if ip not in have:
                state.take(ip, svc)
                res.ips.append(str(ip))
        return Verdict(*SATISFIED)
    families = _families(svc)
    policy = (svc.get("spec") or {}).get("ipFamilyPolicy")
    missing_reason = ""
    for version in families:
        if any(ip.version == version for ip in have):
            continue
        ip, reason = _pick(state, svc, version)
        if ip is None:
            missing_reason = missing_reason or reason
            continue
        state.take(ip, svc)
        res.ips.append(str(ip))
    got = {ipaddress.ip_address(i).version for i in res.ips}
    complete = all(v in got for v in families) if policy == "RequireDualStack" or len(families) == 1 else bool(got)
    if complete:
        return Verdict(*SATISFIED)
    return Verdict("False", missing_reason or "no_pool", OUT_OF_IPS if missing_reason == "out_of_ips" else NO_POOL)


def _pick(state: _State, svc: dict[str, Any], version: int) -> tuple[Address | None, str]:
    """A shareable address of the Service's sharing key, else the first free one of a matching pool."""
    for ip in state.by_sharing_key.get(_annotation(svc, SHARING_KEY_ANNOTATIONS), []):
        if ip.version == version and state.pool_of(ip, svc, allocating=False) is not None \
                and not _share_refusal(svc, state.holders[ip]):
            return ip, ""
    candidates = [p for p in state.pools if p.allocates and p.selects(svc)
                  and any(b.version == version for b in p.blocks)]
    if not candidates:
        return None, "no_pool"
    for pool in candidates:
        ip = state.next_free(pool, version)
        if ip is not None:
            return ip, ""
    return None, "out_of_ips"
