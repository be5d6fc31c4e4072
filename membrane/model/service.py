"""Services: validation with Kubernetes' defaults (type ClusterIP, protocol TCP, targetPort = port)."""

from __future__ import annotations

from typing import Any

from membrane.model import names
from membrane.model.fields import (
    Fields,
    as_int,
    check_cidr,
    check_ip,
    check_name,
    duplicate,
    forbidden,
    in_range,
    invalid,
    missing,
    unsupported,
)
from membrane.model.labels import check_labels

SERVICE_SPEC_FIELDS = (
    "allocateLoadBalancerNodePorts", "clusterIP", "clusterIPs", "externalIPs", "externalName",
    "externalTrafficPolicy", "healthCheckNodePort", "internalTrafficPolicy", "ipFamilies", "ipFamilyPolicy",
    "loadBalancerClass", "loadBalancerIP", "loadBalancerSourceRanges", "ports", "publishNotReadyAddresses",
    "selector", "sessionAffinity", "sessionAffinityConfig", "trafficDistribution", "type",
)
SERVICE_PORT_FIELDS = ("name", "protocol", "appProtocol", "port", "targetPort", "nodePort")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
PROTOCOLS = ("TCP", "UDP", "SCTP")
TRAFFIC_POLICIES = ("Cluster", "Local")
NODE_PORT_RANGE = (30000, 32767)
DEFAULT_AFFINITY_TIMEOUT = 10800  # 3 hours, Kubernetes' default for ClientIP affinity
MAX_AFFINITY_TIMEOUT = 86400


def check_service(obj: dict[str, Any]) -> None:
    """Validate a Service's spec in place and fill Kubernetes' defaults."""
    f = Fields({} if obj.get("spec") is None else obj["spec"], "spec", SERVICE_SPEC_FIELDS)
    obj["spec"] = f.data
    svc_type = f.choice("type", SERVICE_TYPES, default="ClusterIP")
    external_ips = f.strings("externalIPs") or []
    for i, ip in enumerate(external_ips):
        check_ip(ip, f"{f.at('externalIPs')}[{i}]")
    if f.has("selector"):
        check_labels(f.raw("selector"), f.at("selector"))
    headless = _check_cluster_ip(f, svc_type)
    if svc_type == "ExternalName":
        ext = f.string("externalName", required=True)
        check_name(ext.removesuffix("."), f.at("externalName"), names.dns1123_subdomain_error)
    elif f.string("externalName"):
        raise forbidden(f.at("externalName"), "may only be set when `type` is 'ExternalName'")
    _check_ports(f, svc_type, required=svc_type != "ExternalName" and not headless)
    _check_affinity(f)
    _check_traffic_policies(f, svc_type, external_ips)
    _check_load_balancer_fields(f, svc_type)
    f.boolean("publishNotReadyAddresses")
    f.string("trafficDistribution")
    f.choice("ipFamilyPolicy", ("SingleStack", "PreferDualStack", "RequireDualStack"))
    families = f.strings("ipFamilies") or []
    for i, family in enumerate(families):
        if family not in ("IPv4", "IPv6"):
            raise unsupported(f"{f.at('ipFamilies')}[{i}]", family, ("IPv4", "IPv6"))
        if family in families[:i]:
            raise duplicate(f"{f.at('ipFamilies')}[{i}]", family)


def _check_cluster_ip(f: Fields, svc_type: str) -> bool:
    """clusterIP is "" (allocate), "None" (headless) or an IP. Returns whether the service is headless."""
    cluster_ip = f.string("clusterIP") or ""
    cluster_ips = f.strings("clusterIPs") or []
    if svc_type == "ExternalName":
        if cluster_ip or cluster_ips:
            raise forbidden(f.at("clusterIP"), "must be empty for ExternalName services")
        return False
    for i, ip in enumerate(cluster_ips):
        if ip != "None":
            check_ip(ip, f"{f.at('clusterIPs')}[{i}]")
    if cluster_ip and cluster_ips and cluster_ips[0] != cluster_ip:
        raise invalid(f.at("clusterIPs"), cluster_ips, "first value must match `clusterIP`")
    cluster_ip = cluster_ip or (cluster_ips[0] if cluster_ips else "")
    if cluster_ip == "None":
        if svc_type in ("NodePort", "LoadBalancer"):
            raise invalid(f.at("clusterIP"), cluster_ip, f"may not be set to 'None' for {svc_type} services")
        return True
    if cluster_ip:
        check_ip(cluster_ip, f.at("clusterIP"))
    return False


def _check_ports(f: Fields, svc_type: str, *, required: bool) -> None:
    items = f.each("ports", required=required, non_empty=required)
    port_names: set[str] = set()
    frontends: set[tuple[int, str]] = set()
    node_ports: set[tuple[int, str]] = set()
    for path, item in items:
        p = Fields(item, path, SERVICE_PORT_FIELDS)
        name = p.string("name", check=names.dns1123_label_error) or ""
        if len(items) > 1 and not name:
            raise missing(p.at("name"))
        if name in port_names:
            raise duplicate(p.at("name"), name)
        port_names.add(name)
        port = p.integer("port", required=True, lo=1, hi=65535)
        protocol = p.choice("protocol", PROTOCOLS, default="TCP")
        if (port, protocol) in frontends:
            raise duplicate(path, f"{port}/{protocol}")
        frontends.add((port, protocol))
        p.string("appProtocol")
        _check_target_port(p, port)
        node_port = p.integer("nodePort")
        if node_port:
            if svc_type not in ("NodePort", "LoadBalancer"):
                raise forbidden(p.at("nodePort"), f"may not be used when `type` is '{svc_type}'")
            lo, hi = NODE_PORT_RANGE
            if not lo <= node_port <= hi:
                raise invalid(
                    p.at("nodePort"), node_port,
                    f"provided port is not in the valid range. The range of valid ports is {lo}-{hi}",
                )
            if (node_port, protocol) in node_ports:
                raise duplicate(p.at("nodePort"), node_port)
            node_ports.add((node_port, protocol))


def _check_target_port(p: Fields, port: int) -> None:
    """targetPort: a number 1-65535 or a container port name; defaults to ``port``."""
    if not p.has("targetPort") or p.raw("targetPort") in (0, ""):
        p.set("targetPort", port)
        return
    value = p.raw("targetPort")
    if isinstance(value, str):
        if value.isdigit():  # Kubernetes reads "8080" as a port name, which cannot be all digits
            raise invalid(p.at("targetPort"), value, "must contain at least one letter (a-z); use a number")
        check_name(value, p.at("targetPort"), names.iana_svc_name_error)
    else:
        in_range(as_int(value, p.at("targetPort")), 1, 65535, p.at("targetPort"))


def _check_affinity(f: Fields) -> None:
    affinity = f.choice("sessionAffinity", ("None", "ClientIP"), default="None")
    if affinity == "None":
        if f.has("sessionAffinityConfig"):
            raise forbidden(f.at("sessionAffinityConfig"), "must not be set when `sessionAffinity` is None")
        return
    cfg = Fields(f.default("sessionAffinityConfig", {}), f.at("sessionAffinityConfig"), ("clientIP",))
    client = Fields(cfg.default("clientIP", {}), cfg.at("clientIP"), ("timeoutSeconds",))
    client.integer("timeoutSeconds", lo=1, hi=MAX_AFFINITY_TIMEOUT, default=DEFAULT_AFFINITY_TIMEOUT)


def _check_traffic_policies(f: Fields, svc_type: str, external_ips: list[str]) -> None:
    external = svc_type in ("NodePort", "LoadBalancer")
    etp = f.choice("externalTrafficPolicy", TRAFFIC_POLICIES)
    if etp is not None and not (external or external_ips):
        raise invalid(f.at("externalTrafficPolicy"), etp, "may only be set for externally-accessible services")
    if external and etp is None:
        f.set("externalTrafficPolicy", "Cluster")
    if svc_type != "ExternalName":
        f.choice("internalTrafficPolicy", TRAFFIC_POLICIES, default="Cluster")
    elif f.has("internalTrafficPolicy"):
        raise forbidden(f.at("internalTrafficPolicy"), "may not be set for ExternalName services")
    hc = f.integer("healthCheckNodePort")
    if hc:
        if svc_type != "LoadBalancer" or f.raw("externalTrafficPolicy") != "Local":
            raise forbidden(
                f.at("healthCheckNodePort"),
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            )
        in_range(hc, 1, 65535, f.at("healthCheckNodePort"))


def _check_load_balancer_fields(f: Fields, svc_type: str) -> None:
    lb_only = ("loadBalancerIP", "loadBalancerSourceRanges", "loadBalancerClass", "allocateLoadBalancerNodePorts")
    if svc_type != "LoadBalancer":
        for key in lb_only:
            if f.has(key) and f.raw(key) not in ("", []):
                raise forbidden(f.at(key), "may only be used when `type` is 'LoadBalancer'")
        return
    ip = f.string("loadBalancerIP")
    if ip:
        check_ip(ip, f.at("loadBalancerIP"))
    for i, cidr in enumerate(f.strings("loadBalancerSourceRanges") or []):
        check_cidr(cidr.strip(), f"{f.at('loadBalancerSourceRanges')}[{i}]")
    f.string("loadBalancerClass")
    f.boolean("allocateLoadBalancerNodePorts")


SERVICE_NAMESPACE_KEY = "io.kubernetes.service.namespace"
SERVICE_NAME_KEY = "io.kubernetes.service.name"


def service_selector_labels(service: dict[str, Any]) -> dict[str, str]:
    """A Service's labels plus the special keys Cilium's pool and L2 policy selectors may use."""
    meta = service.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    labels[SERVICE_NAMESPACE_KEY] = str(meta.get("namespace") or "default")
    labels[SERVICE_NAME_KEY] = str(meta.get("name") or "")
    return labels
