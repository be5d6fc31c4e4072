"""CiliumL2AnnouncementPolicy (``cilium.io/v2alpha1``, cluster-scoped): validation.

``serviceSelector``/``nodeSelector`` are label selectors (nil: all); ``interfaces`` are regular
expressions, ORed, matched against a node's device names (nil: every device); ``loadBalancerIPs`` and
``externalIPs`` choose which addresses of a selected Service are announced. A regular expression that
does not compile is refused here with the index and the reason.
"""

from __future__ import annotations

import re
from typing import Any

from membrane.model.fields import Fields, index, invalid
from membrane.model.labels import check_selector

L2_SPEC_FIELDS = ("serviceSelector", "nodeSelector", "interfaces", "loadBalancerIPs", "externalIPs")


def check_l2_policy(obj: dict[str, Any]) -> None:
    f = Fields({} if obj.get("spec") is None else obj["spec"], "spec", L2_SPEC_FIELDS)
    obj["spec"] = f.data
    for key in ("serviceSelector", "nodeSelector"):
        if f.has(key):
            check_selector(f.raw(key), f.at(key))
    for i, pattern in enumerate(f.strings("interfaces") or []):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise invalid(index(f.at("interfaces"), i), pattern, f"not a valid regular expression: {exc}") from None
    f.boolean("loadBalancerIPs")
    f.boolean("externalIPs")
