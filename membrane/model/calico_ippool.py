"""Calico ``IPPool`` (``crd.projectcalico.org/v1`` or ``projectcalico.org/v3``, cluster-scoped): accepted as
another way to set the encapsulation between nodes (membrane.model.encap).

Fields checked as Calico's validation does: ``cidr`` (required), ``vxlanMode`` / ``ipipMode``
(``Always``, ``CrossSubnet``, ``Never``; default Never; not both on), ``natOutgoing``, ``disabled``,
``disableBGPExport``, ``blockSize`` (IPv4 20..32), ``nodeSelector``, ``allowedUses``,
``assignmentMode``. Pod addresses still come from Membrane's IPAM (the cluster pool); a pool's
``cidr`` only says which pods its modes apply to (it must overlap the cluster pool to matter).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from membrane.model.encap import ENCAP_MODES
from membrane.model.fields import Fields, forbidden, invalid, missing

SPEC_FIELDS = ("cidr", "vxlanMode", "ipipMode", "natOutgoing", "disabled", "disableBGPExport", "blockSize",
               "nodeSelector", "allowedUses", "assignmentMode")
ALLOWED_USES = ("Workload", "Tunnel", "LoadBalancer")
ASSIGNMENT_MODES = ("Automatic", "Manual")


def check_calico_ip_pool(obj: dict[str, Any]) -> None:
    """Validate a Calico IPPool in place (metadata is checked by the caller)."""
    if obj.get("spec") is None:
        raise missing("spec", "an IPPool needs spec.cidr")
    f = Fields(obj["spec"], "spec", SPEC_FIELDS)
    cidr = f.string("cidr", required=True) or ""
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise invalid(f.at("cidr"), cidr, "must be a valid CIDR") from None
    vxlan = f.choice("vxlanMode", ENCAP_MODES, default="Never")
    ipip = f.choice("ipipMode", ENCAP_MODES, default="Never")
    if vxlan != "Never" and ipip != "Never":
        raise forbidden(f.at("ipipMode"), "IPIP and VXLAN modes cannot both be enabled on one IPPool "
                                          f"(vxlanMode is {vxlan})")
    if net.version == 6 and ipip != "Never":
        raise forbidden(f.at("ipipMode"), "IPIP is not supported on an IPv6 pool")
    f.boolean("natOutgoing")
    f.boolean("disabled")
    f.boolean("disableBGPExport")
    lo = 20 if net.version == 4 else 116
    hi = 32 if net.version == 4 else 128
    f.integer("blockSize", lo=lo, hi=hi, default=26 if net.version == 4 else 122)
    f.string("nodeSelector")
    for path, use in f.each("allowedUses"):
        if use not in ALLOWED_USES:
            raise invalid(path, use, f"must be one of {', '.join(ALLOWED_USES)}")
    f.choice("assignmentMode", ASSIGNMENT_MODES, default="Automatic")


def ippool_row(pool: dict[str, Any], wide: bool) -> list[str]:
    """``kubectl get ippools.crd.projectcalico.org``: NAME, CIDR [IPIPMODE VXLANMODE NATOUTGOING DISABLED]."""
    spec = pool.get("spec") or {}
    row = [str((pool.get("metadata") or {}).get("name", "")), str(spec.get("cidr", ""))]
    if wide:
        row += [spec.get("ipipMode") or "Never", spec.get("vxlanMode") or "Never",
                str(bool(spec.get("natOutgoing"))).lower(), str(bool(spec.get("disabled"))).lower()]
    return row
