"""The ``Egress Gateway:`` line of ``membrane status`` (the agent's ``egress-gateway`` status field).

``cilium-dbg status`` prints no egress gateway line (its StatusResponse has no such field; the feature shows
in ``cilium-dbg bpf egress list`` and its modules' health). Ours follows the page's one-line-per-feature
shape, like ``Host firewall:`` or ``BandwidthManager:``: ``Disabled``, or ``Enabled`` with the policies
applied and the entries in the node's egress map. Policies the agent skipped (a store written by other means
than apply) are listed under it with their reason even without ``--verbose``, as failing controllers are.
"""

from __future__ import annotations

from typing import Any


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def egress_gateway_lines(status: dict[str, Any]) -> list[str]:
    """Tab-separated lines for the status page; none when the agent does not report the field (older agent)."""
    egress = status.get("egress-gateway")
    if not isinstance(egress, dict):
        return []
    if not egress.get("enabled"):
        return ["Egress Gateway:\tDisabled"]
    skipped = egress.get("skipped-policies")
    skipped = skipped if isinstance(skipped, dict) else {}
    summary = (f"{_plural(_count(egress.get('policies')), 'policy', 'policies')}, "
               f"{_plural(_count(egress.get('rows')), 'entry', 'entries')} in mb_egress_v4")
    if skipped:
        summary += f", {_plural(len(skipped), 'policy', 'policies')} skipped"
    lines = [f"Egress Gateway:\tEnabled\t[{summary}]"]
    lines += [f"  skipped {name}: {why}" for name, why in sorted(skipped.items())]
    return lines
