"""What a validated policy carries that Membrane accepts but does not enforce, field by field.

``apply`` prints each as a ``Warning:`` line (as kubectl prints the API server's warnings) and
``policy validate``/``policy get`` as notes, so nothing accepted is ignored silently. The list is the
one place that says what is not enforced: a feature that lands removes its entry here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

L7_RULES = "L7 rules accepted, not enforced yet; the port is enforced at L4 (all traffic on it allowed)"
TLS_FIELD = "accepted, not enforced yet (no TLS inspection); the port is enforced at L4"
REQUIRES = "accepted, not enforced yet (deprecated in Cilium): it does not narrow the rule's peers"
AUTH = "mutual authentication accepted, not enforced yet: traffic the rule allows passes unauthenticated"
HOST_POLICY = ("host policy accepted, not enforced: the host firewall is off (hostFirewall.enabled=false), so the "
               "selected nodes' traffic is not filtered")
_PROXIED_KINDS = {"http", "dns", "kafka"}  # L7 kinds whose proxies enforce them (membrane.proxy)
_CILIUM_KINDS = ("CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy")
_DIRECTIONS = ("ingress", "ingressDeny", "egress", "egressDeny")


@dataclass(frozen=True)
class Unenforced:
    """One accepted field that is not enforced: where it is (``spec.egress[0].toFQDNs``) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def unenforced_fields(obj: Mapping[str, Any], *, host_firewall: bool = False) -> list[Unenforced]:
    """Every field of one validated policy object that is accepted but not enforced (none for other kinds).
    ``host_firewall``: hostFirewall.enabled, under which host policies (``nodeSelector``) are enforced."""
    if obj.get("kind") not in _CILIUM_KINDS:
        return []
    out: list[Unenforced] = []
    for path, rule in _rules(obj):
        if rule.get("nodeSelector") is not None and not host_firewall:
            out.append(Unenforced(f"{path}.nodeSelector", HOST_POLICY))
        for direction in _DIRECTIONS:
            for i, item in enumerate(rule.get(direction) or []):
                out.extend(_item(f"{path}.{direction}[{i}]", item))
    return out


def _rules(obj: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if obj.get("spec") is not None:
        yield "spec", obj["spec"]
    for i, rule in enumerate(obj.get("specs") or []):
        yield f"specs[{i}]", rule


def _item(path: str, item: Mapping[str, Any]) -> Iterator[Unenforced]:
    for key in ("fromRequires", "toRequires"):
        if item.get(key):
            yield Unenforced(f"{path}.{key}", REQUIRES)
    mode = (item.get("authentication") or {}).get("mode")
    if mode and mode != "disabled":
        yield Unenforced(f"{path}.authentication", AUTH)
    for j, port_rule in enumerate(item.get("toPorts") or []):
        ppath = f"{path}.toPorts[{j}]"
        if port_rule.get("rules") and not set(port_rule["rules"]) <= _PROXIED_KINDS:
            yield Unenforced(f"{ppath}.rules", L7_RULES)
        for key in ("terminatingTLS", "originatingTLS", "serverNames", "listener"):
            # serverNames alone are enforced by the SNI proxy (membrane.proxy.tls_sni); with L7 rules
            # they would need terminatingTLS
            if port_rule.get(key) and (key != "serverNames" or port_rule.get("rules")):
                yield Unenforced(f"{ppath}.{key}", TLS_FIELD)
