"""The shape of a lab: its nodes, their underlay subnets and an optional router between subnets.

Built from defaults (``--nodes N``: ``k8s-ctr``, ``k8s-w1`` … on 192.168.10.0/24 like the usual Vagrant
labs) or from ``--config lab.yaml``::

    nodes:
      - name: k8s-ctr
        ip: 192.168.10.100/24
      - name: k8s-w1
        ip: 192.168.20.101/24
        podCIDR: 10.244.1.0/24        # used with ipam.mode=kubernetes
        extraIPs: [192.168.20.240/24] # more addresses on its underlay device (egress gateway egressIP)
    router:                            # optional: one namespace routing between the node subnets
      name: router
      ips: [192.168.10.200/24, 192.168.20.200/24]
    settings:                          # same keys as --set
      ipam.mode: kubernetes
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from membrane.model import helm_values
from membrane.model.config import ClusterConfig
from membrane.model.errors import ValidationError
from membrane.model.helm_release import Resolved, resolve
from membrane.model.helm_values import Values

_NODE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")


@dataclass
class LabNode:
    name: str
    ip: str  # with prefix length, e.g. 192.168.10.100/24
    pod_cidr: str = ""
    extra_ips: list[str] = field(default_factory=list)  # secondary addresses of eth1 (egress IPs)

    @property
    def address(self) -> str:
        return self.ip.split("/")[0]

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Interface(self.ip).network


@dataclass
class LabRouter:
    name: str
    ips: list[str]


@dataclass
class LabTopology:
    nodes: list[LabNode]
    router: LabRouter | None = None
    config: ClusterConfig = field(default_factory=ClusterConfig)
    values: Values = field(default_factory=dict)  # user-supplied Helm values (`lab values`)
    warnings: list[str] = field(default_factory=list)  # of resolving them; not recorded

    @property
    def subnets(self) -> list[ipaddress.IPv4Network]:
        seen: list[ipaddress.IPv4Network] = []
        for node in self.nodes:
            if node.network not in seen:
                seen.append(node.network)
        return seen

    def node(self, name: str) -> LabNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def gateway_for(self, node: LabNode, other: LabNode) -> str | None:
        """The router address a node uses to reach another subnet (None on the same segment)."""
        if node.network == other.network or self.router is None:
            return None
        for ip in self.router.ips:
            if ipaddress.IPv4Interface(ip).network == node.network:
                return ip.split("/")[0]
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [{"name": n.name, "ip": n.ip, "podCIDR": n.pod_cidr,
                       **({"extraIPs": list(n.extra_ips)} if n.extra_ips else {})} for n in self.nodes],
            "router": {"name": self.router.name, "ips": self.router.ips} if self.router else None,
            "config": self.config.to_dict(),
            "values": self.values,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabTopology:
        router = data.get("router")
        return cls(
            nodes=[LabNode(n["name"], n["ip"], n.get("podCIDR", ""), list(n.get("extraIPs") or []))
                   for n in data["nodes"]],
            router=LabRouter(router["name"], list(router["ips"])) if router else None,
            config=ClusterConfig.from_dict(data.get("config", {})),
            values=data.get("values") or {},
        )


def default_nodes(count: int) -> list[LabNode]:
    if not 1 <= count <= 50:
        raise ValidationError("--nodes: must be between 1 and 50")
    names = ["k8s-ctr"] + [f"k8s-w{i}" for i in range(1, count)]
    return [LabNode(name, f"192.168.10.{100 + i}/24") for i, name in enumerate(names)]


def build_topology(nodes: int = 3, config_text: str | None = None, config_source: str = "lab.yaml",
                   settings: list[str] | None = None, values: Values | None = None) -> LabTopology:
    """Topology from defaults or a config file, then Helm values; validated as a whole.

    Values merge in Helm's order: the config file's ``settings:``, then ``values`` (the ``-f`` files
    and ``--set`` flags, already merged by the caller), then ``settings`` (``--set`` strings).
    """
    router = None
    file_values: Values = {}
    if config_text is not None:
        try:
            doc = yaml.safe_load(config_text) or {}
        except yaml.YAMLError as exc:
            raise ValidationError(f"{config_source}: invalid YAML: {exc}") from None
        if not isinstance(doc, dict):
            raise ValidationError(f"{config_source}: expected a mapping at the top level")
        unknown = set(doc) - {"nodes", "router", "settings"}
        if unknown:
            raise ValidationError(f"{config_source}: unknown field {sorted(unknown)[0]!r} (known: nodes, router, settings)")
        lab_nodes = _parse_nodes(doc.get("nodes"), config_source) if doc.get("nodes") else default_nodes(nodes)
        if doc.get("router"):
            router = _parse_router(doc["router"], config_source)
        file_values = _settings_values(doc.get("settings"), config_source)
    else:
        lab_nodes = default_nodes(nodes)
    sets = [helm_values.parse_set(item, where=f"--set {item}") for item in settings or []]
    merged = helm_values.combine([file_values, values or {}], sets)
    resolved = resolve_values(merged)
    topo = LabTopology(lab_nodes, router, resolved.config, values=merged, warnings=resolved.warnings)
    validate_topology(topo, config_source)
    return topo


def resolve_values(values: Values) -> Resolved:
    """The configuration the values ask for, with the checks only the lab layer can make (Hubble metrics)."""
    from membrane.hubble.metrics import parse_metric_options

    return resolve(values, {"hubble_metrics_enabled": parse_metric_options})


def _settings_values(settings: Any, source: str) -> Values:
    """``settings:`` of lab.yaml: dotted keys (``ipam.mode: kubernetes``) or nested maps, as values."""
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise ValidationError(f"{source}: settings: expected a mapping of Helm keys")
    out: Values = {}
    for key, value in settings.items():
        nested: Any = value
        for segment in reversed(str(key).split(".")):
            nested = {segment: nested}
        out = helm_values.merge(out, nested)
    return out


def _parse_nodes(items: Any, source: str) -> list[LabNode]:
    if not isinstance(items, list):
        raise ValidationError(f"{source}: nodes: expected a list")
    out = []
    for i, item in enumerate(items):
        where = f"{source}: nodes[{i}]"
        if not isinstance(item, dict):
            raise ValidationError(f"{where}: expected a mapping")
        unknown = set(item) - {"name", "ip", "podCIDR", "extraIPs"}
        if unknown:
            raise ValidationError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        if "name" not in item or "ip" not in item:
            raise ValidationError(f"{where}: name and ip are required")
        extra = item.get("extraIPs") or []
        if not isinstance(extra, list):
            raise ValidationError(f"{where}.extraIPs: expected a list of addresses with prefix length")
        out.append(LabNode(str(item["name"]), str(item["ip"]), str(item.get("podCIDR", "") or ""),
                           [str(e) for e in extra]))
    return out


def _parse_router(item: Any, source: str) -> LabRouter:
    if not isinstance(item, dict) or not isinstance(item.get("ips"), list):
        raise ValidationError(f"{source}: router: expected {{name, ips: [a/len, b/len]}}")
    return LabRouter(str(item.get("name", "router")), [str(i) for i in item["ips"]])


def validate_topology(topo: LabTopology, source: str) -> None:
    names: set[str] = set()
    ips: set[str] = set()
    for i, node in enumerate(topo.nodes):
        where = f"{source}: nodes[{i}]"
        if not _NODE_NAME.match(node.name):
            raise ValidationError(f"{where}.name: {node.name!r} must be a DNS label of at most 15 characters")
        if node.name in names:
            raise ValidationError(f"{where}.name: duplicate node {node.name!r}")
        names.add(node.name)
        try:
            iface = ipaddress.IPv4Interface(node.ip)
        except ValueError as exc:
            raise ValidationError(f"{where}.ip: {node.ip!r}: {exc}") from None
        if "/" not in node.ip:
            raise ValidationError(f"{where}.ip: {node.ip!r}: give a prefix length, e.g. 192.168.10.100/24")
        if iface.ip in (iface.network.network_address, iface.network.broadcast_address):
            raise ValidationError(f"{where}.ip: {node.ip} is the network or broadcast address")
        if node.address in ips:
            raise ValidationError(f"{where}.ip: duplicate address {node.address}")
        ips.add(node.address)
        for j, extra in enumerate(node.extra_ips):
            try:
                if "/" not in extra:
                    raise ValueError("give a prefix length, e.g. 192.168.10.240/24")
                extra_ip = str(ipaddress.IPv4Interface(extra).ip)
            except ValueError as exc:
                raise ValidationError(f"{where}.extraIPs[{j}]: {extra!r}: {exc}") from None
            if extra_ip in ips:
                raise ValidationError(f"{where}.extraIPs[{j}]: duplicate address {extra_ip}")
            ips.add(extra_ip)
        if node.pod_cidr:
            try:
                ipaddress.IPv4Network(node.pod_cidr)
            except ValueError as exc:
                raise ValidationError(f"{where}.podCIDR: {node.pod_cidr!r}: {exc}") from None
    if topo.config.ipam_mode == "kubernetes":
        for i, node in enumerate(topo.nodes):
            if not node.pod_cidr:
                # Without a config file, derive host-scope CIDRs from the pool like a controller-manager would.
                pool = ipaddress.IPv4Network(topo.config.cluster_pool_ipv4_pod_cidr_list[0])
                subnets = pool.subnets(new_prefix=topo.config.cluster_pool_ipv4_mask_size)
                for _ in range(i):
                    next(subnets)
                node.pod_cidr = str(next(subnets))
    if len(topo.subnets) > 1 and topo.router is None:
        raise ValidationError(f"{source}: nodes span {len(topo.subnets)} subnets; add a router with one IP in each")
    if topo.router is not None:
        for j, ip in enumerate(topo.router.ips):
            try:
                ipaddress.IPv4Interface(ip)
            except ValueError as exc:
                raise ValidationError(f"{source}: router.ips[{j}]: {ip!r}: {exc}") from None
        routed = {ipaddress.IPv4Interface(ip).network for ip in topo.router.ips}
        for subnet in topo.subnets:
            if subnet not in routed:
                raise ValidationError(f"{source}: router: no address in node subnet {subnet}")
