"""What a running lab still holds for pods that no longer exist (used by the chaos test).

Each check compares one place state lives against the pods in the store and returns a list of
human-readable leftovers (empty when clean): pod network namespaces on the host, ``lxc`` veths in each
node namespace, IPAM allocations in each agent, ipcache entries in etcd and in each node's BPF ipcache,
and identities in etcd that no live pod uses. BPF pins are checked after ``lab delete``
(``Lab.leftovers``).
"""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any

from membrane.model.naming import NETNS_DIR
from membrane.store.etcd import EtcdClient
from membrane.store.layout import StoreLayout, unquote_segment
from tests.lab.harness import Lab

INFRA_OWNERS = {"router", "health"}  # IPAM owners that are not pods


def live_pods(lab: Lab) -> dict[str, dict[str, Any]]:
    """``namespace/name`` -> pod, for every pod in the store."""
    return {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in lab.get_json("pods", "-A")}


def nodes(lab: Lab) -> list[dict[str, Any]]:
    return lab.get_json("nodes")


def _pod_cidrs(lab: Lab) -> list[ipaddress.IPv4Network]:
    out = []
    for node in nodes(lab):
        for cidr in node.get("spec", {}).get("podCIDRs", []) or [node.get("spec", {}).get("podCIDR", "")]:
            if cidr:
                out.append(ipaddress.ip_network(cidr))
    return out


def _in_pod_cidr(ip: str, cidrs: list[ipaddress.IPv4Network]) -> bool:
    try:
        addr = ipaddress.ip_network(ip, strict=False)
    except ValueError:
        return False
    return addr.prefixlen == 32 and any(addr.subnet_of(c) for c in cidrs)  # type: ignore[arg-type]


def _store(lab: Lab) -> tuple[EtcdClient, StoreLayout]:
    return EtcdClient(lab.paths.etcd_endpoint), StoreLayout("default")


def store_ipcache(lab: Lab) -> dict[str, dict[str, Any]]:
    """ip/prefix -> {"identity", "node", ...} as published in etcd."""
    client, layout = _store(lab)
    out = {}
    for kv in client.get_prefix(layout.ipcache_prefix)[0]:
        out[unquote_segment(kv.key[len(layout.ipcache_prefix):])] = json.loads(kv.value)
    return out


def store_identities(lab: Lab) -> set[int]:
    client, layout = _store(lab)
    prefix = f"{layout.identities_prefix}id/"
    out = set()
    for kv in client.get_prefix(prefix)[0]:
        out.add(int(kv.key[len(prefix):]))
    return out


def pod_ips(pods: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {p["status"]["podIP"]: k for k, p in pods.items() if p.get("status", {}).get("podIP")}


def leaked_netns(lab: Lab, pods: dict[str, dict[str, Any]]) -> list[str]:
    want = {lab.paths.pod_netns(*key.split("/", 1)) for key in pods}
    have = {n for n in os.listdir(NETNS_DIR) if n.startswith(f"{lab.name}.pod-")}
    return sorted(f"netns {n}" for n in have - want)


def leaked_endpoints_and_veths(lab: Lab, pods: dict[str, dict[str, Any]]) -> list[str]:
    """Endpoints of pods that are gone, and lxc devices that belong to no live pod's endpoint, per node."""
    found = []
    for node in (n["metadata"]["name"] for n in nodes(lab)):
        eps = json.loads(lab.run("endpoint", "list", "--node", node, "-o", "json").stdout)
        found += [f"{node}: endpoint {e['id']} of deleted pod {e['namespace']}/{e['pod_name']} ({e['ipv4']})"
                  for e in eps if f"{e['namespace']}/{e['pod_name']}" not in pods]
        owned = {e["host_ifname"] for e in eps if f"{e['namespace']}/{e['pod_name']}" in pods}
        links = lab.node_exec(node, "ip", "-o", "link", "show").stdout.splitlines()
        devs = {line.split(":")[1].strip().split("@")[0] for line in links if ":" in line}
        found += [f"{node}: veth {d} belongs to no live pod's endpoint" for d in sorted(devs) if d.startswith("lxc") and d not in owned]
    return found


def leaked_ipam(lab: Lab, pods: dict[str, dict[str, Any]]) -> list[str]:
    found = []
    for node in (n["metadata"]["name"] for n in nodes(lab)):
        allocations = lab.agent_status(node).get("ipam", {}).get("allocations")
        if allocations is None:
            found.append(f"{node}: agent status unavailable")
            continue
        found += [f"{node}: IP {ip} still allocated to {owner}" for ip, owner in sorted(allocations.items())
                  if owner not in INFRA_OWNERS and owner not in pods]
    return found


def leaked_store_ipcache(lab: Lab, pods: dict[str, dict[str, Any]]) -> list[str]:
    ips, cidrs = pod_ips(pods), _pod_cidrs(lab)
    return [f"etcd ipcache {prefix} -> {entry} (no such pod)" for prefix, entry in sorted(store_ipcache(lab).items())
            if _in_pod_cidr(prefix, cidrs) and prefix.split("/")[0] not in ips]


def leaked_bpf_ipcache(lab: Lab, pods: dict[str, dict[str, Any]]) -> list[str]:
    """Pod-CIDR /32s in each node's BPF ipcache that are neither a live pod nor a node's router/health IP."""
    ips, cidrs = pod_ips(pods), _pod_cidrs(lab)
    infra: set[str] = set()
    for node in (n["metadata"]["name"] for n in nodes(lab)):
        allocations = lab.agent_status(node).get("ipam", {}).get("allocations", {})
        infra |= {ip for ip, owner in allocations.items() if owner in INFRA_OWNERS}
    found = []
    for node in (n["metadata"]["name"] for n in nodes(lab)):
        rows = json.loads(lab.run("bpf", "ipcache", "list", "--node", node, "-o", "json").stdout)
        for row in rows:
            ip = row["prefix"].split("/")[0]
            if _in_pod_cidr(row["prefix"], cidrs) and ip not in ips and ip not in infra:
                found.append(f"{node}: BPF ipcache {row['prefix']} -> {row['value']} (no such pod)")
    return found


def unused_identities(lab: Lab, pods: dict[str, dict[str, Any]]) -> list[str]:
    """Identities in etcd that no live pod's ipcache entry carries (CIDR identities excepted)."""
    ips, cidrs = pod_ips(pods), _pod_cidrs(lab)
    cache = store_ipcache(lab)
    used = {int(e["identity"]) for p, e in cache.items() if p.split("/")[0] in ips or not _in_pod_cidr(p, cidrs)}
    return [f"identity {i} used by no pod" for i in sorted(store_identities(lab) - used)]


def all_leaks(lab: Lab, pods: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Every leftover of pods not in ``pods`` (default: the pods in the store)."""
    pods = live_pods(lab) if pods is None else pods
    return (leaked_netns(lab, pods) + leaked_endpoints_and_veths(lab, pods) + leaked_ipam(lab, pods)
            + leaked_store_ipcache(lab, pods) + leaked_bpf_ipcache(lab, pods) + unused_identities(lab, pods))
