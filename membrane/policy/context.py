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
