"""The shape of a lab: its nodes, their underlay subnets and an optional router between subnets.

Built from defaults (``--nodes N``: ``k8s-ctr``, ``k8s-w1`` … on 192.168.10.0/24 like the usual Vagrant
labs) or from ``--config lab.yaml``::

    nodes:
      - name: k8s-ctr
        ip: 192.168.10.100/24
      - name: k8s-w1
        ip: 192.168.20.101/24
        podCIDR: 10.244.1.0/24        # used with ipam.mode=kubernetes
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

from membrane.model.config import ClusterConfig
from membrane.model.errors import ValidationError

_NODE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")


@dataclass
class LabNode:
    name: str
    ip: str  # with prefix length, e.g. 192.168.10.100/24
    pod_cidr: str = ""

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
            "nodes": [{"name": n.name, "ip": n.ip, "podCIDR": n.pod_cidr} for n in self.nodes],
            "router": {"name": self.router.name, "ips": self.router.ips} if self.router else None,
            "config": self.config.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabTopology:
        router = data.get("router")
        return cls(
            nodes=[LabNode(n["name"], n["ip"], n.get("podCIDR", "")) for n in data["nodes"]],
            router=LabRouter(router["name"], list(router["ips"])) if router else None,
            config=ClusterConfig.from_dict(data.get("config", {})),
        )


def default_nodes(count: int) -> list[LabNode]:
    if not 1 <= count <= 50:
        raise ValidationError("--nodes: must be between 1 and 50")
    names = ["k8s-ctr"] + [f"k8s-w{i}" for i in range(1, count)]
    return [LabNode(name, f"192.168.10.{100 + i}/24") for i, name in enumerate(names)]


def build_topology(nodes: int = 3, config_text: str | None = None, config_source: str = "lab.yaml",
                   settings: list[str] | None = None) -> LabTopology:
    """Topology from defaults or a config file, then ``--set`` overrides; validated as a whole."""
    cfg = ClusterConfig()
    router = None
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
        for key, value in (doc.get("settings") or {}).items():
            raw = ",".join(map(str, value)) if isinstance(value, list) else str(value).lower() if isinstance(value, bool) else str(value)
            try:
                cfg.set(str(key), raw)
            except ValidationError as exc:
                raise ValidationError(f"{config_source}: settings.{key}: {exc.reason}") from None
    else:
        lab_nodes = default_nodes(nodes)
    for item in settings or []:
        if "=" not in item:
            raise ValidationError(f"--set {item}: expected key=value")
        key, _, raw = item.partition("=")
        cfg.set(key.strip(), raw.strip())
    cfg.validate("settings")  # settings that constrain each other, once all are in
    topo = LabTopology(lab_nodes, router, cfg)
    validate_topology(topo, config_source)
    return topo


def _parse_nodes(items: Any, source: str) -> list[LabNode]:
    if not isinstance(items, list):
        raise ValidationError(f"{source}: nodes: expected a list")
    out = []
    for i, item in enumerate(items):
        where = f"{source}: nodes[{i}]"
        if not isinstance(item, dict):
            raise ValidationError(f"{where}: expected a mapping")
        unknown = set(item) - {"name", "ip", "podCIDR"}
        if unknown:
            raise ValidationError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        if "name" not in item or "ip" not in item:
            raise ValidationError(f"{where}: name and ip are required")
        out.append(LabNode(str(item["name"]), str(item["ip"]), str(item.get("podCIDR", "") or "")))
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
