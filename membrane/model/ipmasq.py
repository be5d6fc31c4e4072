"""ip-masq-agent's configuration: which destinations keep a pod's own source address.

Cilium's agent reads it from the ``ip-masq-agent`` ConfigMap in ``kube-system`` (key ``config``,
YAML or JSON), which its Helm chart writes from ``ipMasqAgent.config``. Here the ConfigMap, when one
is applied, wins; otherwise the Helm values give the configuration. Keys:

- ``nonMasqueradeCIDRs``: IPv4 CIDRs not masqueraded; empty or absent means Cilium's default list
  (``DEFAULT_NON_MASQUERADE_CIDRS``, the ranges of RFC 1918, 6598 and the IANA special registry);
- ``masqLinkLocal``: false (the default) also exempts ``169.254.0.0/16``;
- ``masqLinkLocalIPv6`` and ``resyncInterval`` are accepted and have no effect (IPv4 only; the
  agent watches the store instead of re-reading a file).

The ipv4NativeRoutingCIDR stays exempt as well, as in Cilium. Overlapping or duplicate CIDRs are
refused so a list means exactly what it says.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import yaml

from membrane.model.errors import ValidationError
from membrane.model.fields import Fields, as_bool, as_list, as_str, index, ipv4_cidr_list_item, join

CONFIGMAP_NAMESPACE = "kube-system"
CONFIGMAP_NAME = "ip-masq-agent"
CONFIGMAP_KEY = "config"
DEFAULT_NON_MASQUERADE_CIDRS = (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24",
    "192.88.99.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4",
)
LINK_LOCAL_CIDR = "169.254.0.0/16"
_KEYS = ("nonMasqueradeCIDRs", "masqLinkLocal", "masqLinkLocalIPv6", "resyncInterval")


@dataclass(frozen=True)
class IpMasqConfig:
    non_masquerade_cidrs: tuple[str, ...] = ()
    masq_link_local: bool = False

    def prefixes(self) -> list[ipaddress.IPv4Network]:
        """The prefixes the datapath exempts: the list (or the default one) and link-local."""
        cidrs = list(self.non_masquerade_cidrs or DEFAULT_NON_MASQUERADE_CIDRS)
        if not self.masq_link_local:
            cidrs.append(LINK_LOCAL_CIDR)
        return sorted({ipaddress.IPv4Network(c) for c in cidrs}, key=lambda n: (n.network_address, n.prefixlen))


def check_cidrs(values: Any, path: str) -> list[str]:
    """IPv4 CIDRs in canonical form (host bits cleared, as Go's ParseCIDR does); refuses IPv6,
    duplicates and overlaps, naming both entries."""
    out: list[str] = []
    nets: list[ipaddress.IPv4Network] = []
    for i, raw in enumerate(as_list(values, path)):
        net = ipv4_cidr_list_item(index(path, i), raw, nets, path,
                                  "IPv6 is not enabled; only IPv4 CIDRs are masqueraded")
        nets.append(net)
        out.append(str(net))
    return out


def parse_config(data: Any, path: str = "") -> IpMasqConfig:
    """A parsed configuration mapping (the ConfigMap's ``config`` document)."""
    if data is None:
        return IpMasqConfig()
    fields = Fields(data, path, _KEYS)
    cidrs = check_cidrs(fields.raw("nonMasqueradeCIDRs") or [], fields.at("nonMasqueradeCIDRs"))
    link_local = fields.boolean("masqLinkLocal") or False
    if fields.has("masqLinkLocalIPv6"):
        as_bool(fields.raw("masqLinkLocalIPv6"), fields.at("masqLinkLocalIPv6"))
    if fields.has("resyncInterval"):
        as_str(fields.raw("resyncInterval"), fields.at("resyncInterval"))
    return IpMasqConfig(tuple(cidrs), link_local)


def parse_config_text(text: Any, path: str) -> IpMasqConfig:
    """The ConfigMap's ``config`` value: YAML (JSON is YAML too)."""
    text = as_str(text, path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValidationError(f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}", path) from None
    return parse_config(data, path)


def is_ipmasq_configmap(obj: dict[str, Any]) -> bool:
    meta = obj.get("metadata") or {}
    return (obj.get("kind") == "ConfigMap" and meta.get("namespace") == CONFIGMAP_NAMESPACE
            and meta.get("name") == CONFIGMAP_NAME)


def config_of_configmap(obj: dict[str, Any]) -> IpMasqConfig:
    """The configuration an ``ip-masq-agent`` ConfigMap holds (no ``config`` key: the defaults)."""
    data = obj.get("data") or {}
    if CONFIGMAP_KEY not in data:
        return IpMasqConfig()
    return parse_config_text(data[CONFIGMAP_KEY], join("data", CONFIGMAP_KEY))
