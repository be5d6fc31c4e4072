"""CiliumCIDRGroups as policies see them: ``cidrGroupRef`` / ``cidrGroupSelector`` -> CIDRs.

A ``fromCIDRSet``/``toCIDRSet`` entry naming a group (or selecting groups by their labels) stands for
each of the group's ``externalCIDRs``, minus the entry's ``except`` prefixes that lie inside it. A name
with no group, or a selector matching none, selects nothing until such a group exists: the agent
re-translates its policies whenever the groups change (as Cilium re-resolves them), and ``policy
simulate`` resolves them from the same store objects.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from membrane.model.labels import LabelSelector
from membrane.policy.selector import CIDRSelector

KIND = "CiliumCIDRGroup"


@dataclass(frozen=True)
class CIDRGroup:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    cidrs: tuple[str, ...] = ()


CIDRGroups = Mapping[str, CIDRGroup]


def cidr_groups(objs: Iterable[Mapping[str, Any]]) -> dict[str, CIDRGroup]:
    """name -> group, from validated CiliumCIDRGroup objects (others are ignored)."""
    out = {}
    for obj in objs:
        if obj.get("kind") != KIND:
            continue
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        cidrs = tuple(str(c) for c in (obj.get("spec") or {}).get("externalCIDRs") or [])
        out[name] = CIDRGroup(name, dict(meta.get("labels") or {}), cidrs)
    return out


def selected_groups(entry: Mapping[str, Any], groups: CIDRGroups) -> list[CIDRGroup]:
    """The groups a CIDRSet entry names (``cidrGroupRef``) or selects (``cidrGroupSelector``)."""
    ref = entry.get("cidrGroupRef")
    if ref:
        group = groups.get(str(ref))
        return [group] if group is not None else []
    selector = entry.get("cidrGroupSelector")
    if selector is None:
        return []
    sel = LabelSelector.from_dict(selector)
    return [g for _name, g in sorted(groups.items()) if sel.matches(g.labels)]


def group_selectors(entry: Mapping[str, Any], groups: CIDRGroups) -> list[CIDRSelector]:
    """The CIDR selectors one group-referencing CIDRSet entry stands for now."""
    excepts = [ipaddress.ip_network(e, strict=False) for e in entry.get("except") or ()]
    out = []
    for group in selected_groups(entry, groups):
        for cidr in group.cidrs:
            net = ipaddress.ip_network(cidr, strict=False)
            inside = [str(e) for e in excepts if e.version == net.version and e.subnet_of(net)]  # type: ignore[arg-type]
            out.append(CIDRSelector.parse(cidr, inside))
    return out
