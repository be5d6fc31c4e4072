"""What translating a policy needs besides the policy: the cluster objects its peers name.

CiliumCIDRGroups (``cidrGroupRef``/``cidrGroupSelector``) and Services (``toServices``). The agent
builds one from its mirrors and translates every policy again when it changes; ``policy simulate``
builds one from the store. Equal contexts translate alike, so comparing two says whether to redo.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from membrane.policy.cidrgroups import CIDRGroups, cidr_groups
from membrane.policy.services import ServiceTable, service_table


def uses_context(obj: Mapping[str, Any]) -> bool:
    """Whether a policy's translation depends on the context (it names CIDR groups or Services)."""
    specs = ([obj["spec"]] if obj.get("spec") is not None else []) + list(obj.get("specs") or [])
    for spec in specs:
        for direction in ("ingress", "ingressDeny", "egress", "egressDeny"):
            for item in spec.get(direction) or []:
                if item.get("toServices") or any(
                        not entry.get("cidr") for key in ("fromCIDRSet", "toCIDRSet") for entry in item.get(key) or []):
                    return True
    return False


@dataclass(frozen=True)
class PolicyContext:
    cidr_groups: CIDRGroups = field(default_factory=dict)
    services: ServiceTable = field(default_factory=dict)

    @classmethod
    def from_objects(cls, objs: Iterable[Mapping[str, Any]]) -> PolicyContext:
        """From any mix of objects: the CiliumCIDRGroups and Services among them."""
        objs = list(objs)
        return cls(cidr_groups(objs), service_table(objs))

    def updated(self, objs: Iterable[Mapping[str, Any]]) -> PolicyContext:
        """This context with the groups and Services in ``objs`` added or replaced (a simulate candidate)."""
        new = PolicyContext.from_objects(objs)
        return PolicyContext({**self.cidr_groups, **new.cidr_groups}, {**self.services, **new.services})
