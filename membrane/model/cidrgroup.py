"""CiliumCIDRGroup (``cilium.io/v2alpha1``, cluster-scoped): a named, labelled list of CIDRs.

Policies select its CIDRs from ``fromCIDRSet``/``toCIDRSet`` entries by name (``cidrGroupRef``) or by
the group's labels (``cidrGroupSelector``). ``spec.externalCIDRs`` is required (it may be empty: such a
group selects nothing); each entry is a CIDR (a bare address means its /32 or /128).
"""

from __future__ import annotations

from typing import Any

from membrane.model.fields import Fields, as_str, check_cidr, missing

SPEC_FIELDS = ("externalCIDRs",)


def check_cidr_group(obj: dict[str, Any]) -> None:
    """Validate a CiliumCIDRGroup in place (metadata is checked by the caller)."""
    if obj.get("spec") is None:
        raise missing("spec", "a CiliumCIDRGroup needs spec.externalCIDRs")
    f = Fields(obj["spec"], "spec", SPEC_FIELDS)
    if f.raw("externalCIDRs") is None:
        raise missing(f.at("externalCIDRs"))
    for cpath, value in f.each("externalCIDRs"):
        check_cidr(as_str(value, cpath), cpath, allow_bare_ip=True)
