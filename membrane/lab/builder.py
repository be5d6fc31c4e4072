"""``membrane lab create`` and ``lab delete``: build a cluster from namespaces and remove all of it.

The underlay is a bridge per node subnet inside ``<lab>.underlay``; each node namespace gets ``eth1``
on its subnet; an optional router namespace joins the subnets. etcd listens on a unix socket in the
lab's run directory; operator, agents and the Hubble relay run inside node namespaces; the lab kubelet in the host
namespace (it only talks through sockets). Lab addresses exist only inside lab namespaces.

Delete works from the record *and* by sweeping: every namespace named ``<lab>.*``, every process in
those namespaces or naming the run directory, the bpffs tree and the run directory — so a crashed
or half-built lab goes away too.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable

from membrane.ipam.overlap import check_no_overlap
from membrane.lab import frr, processes, release
from membrane.lab.daemons import ETCD_BIN, LabError, daemon_specs, daemon_state, spawn_supervised, state_path
from membrane.lab.hubble_certs import issue_lab_certs
from membrane.lab.paths import LabPaths
from membrane.lab.record import LabRecord, load_record
from membrane.lab.topology import LabTopology
from membrane.lab.world import create_world
from membrane.model.errors import ValidationError
from membrane.model.naming import NETNS_DIR
from membrane.store.etcd import EtcdClient
from membrane.store.resources import ResourceStore

Progress = Callable[[str], None]


def _ip(*args: str, netns: str | None = None) -> None:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: {proc.stderr.strip()}")


def _sysctl(netns: str, key: str, value: str) -> None:
    proc = subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", f"{key}={value}"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabError(f"sysctl {key} in {netns}: {proc.stderr.strip()}")


def lab_netns(lab: str) -> list[str]:
    prefix = LabPaths(lab).netns_prefix
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def ensure_bpffs() -> None:
    if subprocess.run(["mountpoint", "-q", "/sys/fs/bpf"]).returncode != 0:
        subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], check=True)


def check_pod_cidrs(topo: LabTopology) -> None:
    nets = [str(s) for s in topo.subnets]
    if topo.config.ipam_mode == "kubernetes":
        check_no_overlap([n.pod_cidr for n in topo.nodes], nets)
    else:
        check_no_overlap(topo.config.cluster_pool_ipv4_pod_cidr_list, nets)


def create(lab: str, topo: LabTopology, progress: Progress) -> LabRecord:
    if os.geteuid() != 0:
        raise LabError("lab create needs root (network namespaces, BPF)")
    paths = LabPaths(lab)
    if load_record(lab) is not None or lab_netns(lab):
        raise LabError(f"lab {lab!r} already exists; remove it with: membrane lab delete --lab {lab}")
    try:
        check_pod_cidrs(topo)
    except ValidationError as exc:
        raise LabError(str(exc)) from None
    if not os.path.exists(ETCD_BIN):
        raise LabError(f"{ETCD_BIN} not found: run 'make setup' (installs etcd-server)")
    if topo.config.encryption_enabled:  # WireGuard is userspace here (membrane.datapath.linux.wireguard)
        missing = [tool for tool in ("wireguard-go", "wg") if not shutil.which(tool)]
        if missing:
            raise LabError(f"encryption.enabled=true needs {' and '.join(missing)}: run 'make setup' "
                           "(installs wireguard-go and wireguard-tools)")
    os.makedirs(paths.log_dir, exist_ok=True)
    record = LabRecord(lab, topo)
    record.save()
    try:
        ensure_bpffs()
        progress(f"underlay and {len(topo.nodes)} node namespaces")
        _build_network(paths, topo)
        if frr.wanted(topo):  # BGP on: the router runs FRR and learns pod CIDRs and Service IPs by BGP
            progress("router: FRR (zebra, bgpd)")
            record.processes.update(frr.start(lab, topo))
            record.save()
        specs = daemon_specs(lab, topo)
        progress("etcd (cluster store)")
        os.makedirs(paths.etcd_dir, exist_ok=True)
        record.processes["etcd"] = spawn_supervised(lab, "etcd", specs["etcd"])
        record.save()
        client = EtcdClient(paths.etcd_endpoint)
        _wait(lambda: _etcd_ok(client), 20, "etcd did not become ready")
        _seed_store(client, topo)
        if topo.config.hubble_tls_enabled:
            progress("Hubble TLS: CA, agent server and relay client certificates")
            issue_lab_certs(lab, topo)
        progress("operator")
        record.processes["operator"] = spawn_supervised(lab, "operator", specs["operator"])
        progress("agents: " + ", ".join(n.name for n in topo.nodes))
        for node in topo.nodes:
            record.processes[f"agent-{node.name}"] = spawn_supervised(lab, f"agent-{node.name}", specs[f"agent-{node.name}"])
        record.processes["kubelet"] = spawn_supervised(lab, "kubelet", specs["kubelet"])
        record.processes["relay"] = spawn_supervised(lab, "relay", specs["relay"])
        record.save()
        progress("waiting for nodes to become Ready")
        store = ResourceStore(client, topo.config.cluster_name)
        _wait(lambda: _nodes_ready(store, topo, record), 60, "nodes did not become Ready")
        progress("outside world (DNS, internet servers) and cluster DNS")
        create_world(lab, topo)
        if frr.wanted(topo):
            frr.route_world(lab, topo)
        store.apply_many(cluster_dns_objects())
        record.state = "ready"
        record.save()
        return record
    except BaseException as exc:
        kept = _keep_logs(lab)
        delete(lab, lambda _m: None)
        if isinstance(exc, LabError) and kept:
            raise LabError(f"{exc}; logs saved in {kept}") from None
        raise


def _keep_logs(lab: str) -> str:
    """Copy a failed lab's logs out of the run directory before it is removed."""
    src = LabPaths(lab).log_dir
    if not os.path.isdir(src):
        return ""
    dst = f"/tmp/membrane-{lab}-failed-logs"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return dst


def _build_network(paths: LabPaths, topo: LabTopology) -> None:
    ul = paths.underlay_netns
    _ip("netns", "add", ul)
    _ip("link", "set", "lo", "up", netns=ul)
    bridges = {}
    for i, subnet in enumerate(topo.subnets):
        br = f"br{i}"
        _ip("link", "add", br, "type", "bridge", netns=ul)
        _ip("link", "set", br, "up", netns=ul)
        bridges[subnet] = br
    for i, node in enumerate(topo.nodes):
        ns = paths.node_netns(node.name)
        _ip("netns", "add", ns)
        port = f"n{i}"
        _ip("link", "add", port, "type", "veth", "peer", "name", "eth1", "netns", ns, netns=ul)
        _ip("link", "set", port, "master", bridges[node.network], "up", netns=ul)
        _ip("link", "set", "lo", "up", netns=ns)
        _ip("addr", "add", node.ip, "dev", "eth1", netns=ns)
        for extra in node.extra_ips:  # e.g. an egress gateway's egressIP (secondary: node.ip stays first)
            _ip("addr", "add", extra, "dev", "eth1", netns=ns)
        _ip("link", "set", "eth1", "up", netns=ns)
        _sysctl(ns, "net.ipv4.ip_forward", "1")
    if topo.router is not None:
        rns = paths.router_netns(topo.router.name)
        _ip("netns", "add", rns)
        _ip("link", "set", "lo", "up", netns=rns)
        for j, ip in enumerate(topo.router.ips):
            subnet = next(s for s in topo.subnets if s.overlaps(ipaddress.IPv4Interface(ip).network))
            port = f"r{j}"
            _ip("link", "add", port, "type", "veth", "peer", "name", f"eth{j + 1}", "netns", rns, netns=ul)
            _ip("link", "set", port, "master", bridges[subnet], "up", netns=ul)
            _ip("addr", "add", ip, "dev", f"eth{j + 1}", netns=rns)
            _ip("link", "set", f"eth{j + 1}", "up", netns=rns)
        _sysctl(rns, "net.ipv4.ip_forward", "1")
        for node in topo.nodes:
            gw = next(ip.split("/")[0] for ip in topo.router.ips
                      if ipaddress.IPv4Interface(ip).network == node.network)
            _ip("route", "add", "default", "via", gw, netns=paths.node_netns(node.name))


def _etcd_ok(client: EtcdClient) -> bool:
    try:
        client.status()
        return True
    except Exception:
        return False


def _seed_store(client: EtcdClient, topo: LabTopology) -> None:
    cluster = topo.config.cluster_name
    release.store(client, topo.config, topo.values, revision=1)
    store = ResourceStore(client, cluster)
    objs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}, "status": {"phase": "Active"}}
            for ns in ("default", "kube-system")]
    for i, node in enumerate(topo.nodes):
        labels = {"kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
        if i == 0:
            labels["node-role.kubernetes.io/control-plane"] = ""
        spec = {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]} if topo.config.ipam_mode == "kubernetes" else {}
        objs.append({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node.name, "labels": labels,
                         "annotations": {"membrane.io/underlay-cidr": str(node.network)}},
            "spec": spec,
            "status": {
                "addresses": [{"type": "InternalIP", "address": node.address}, {"type": "Hostname", "address": node.name}],
                "conditions": [{"type": "Ready", "status": "False", "reason": "AgentNotReady"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0-membrane-lab", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kernelVersion": platform.release(), "containerRuntimeVersion": "membrane-lab://0.1.0",
                             "architecture": "amd64", "operatingSystem": "linux"},
            },
        })
    store.apply_many(objs)


KUBE_DNS_IP = "10.96.0.10"


def cluster_dns_objects() -> list[dict[str, object]]:
    """kube-dns in kube-system, served by the built-in CoreDNS image, like a kubeadm cluster has."""
    labels = {"k8s-app": "kube-dns"}
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
         "spec": {"selector": labels, "clusterIP": KUBE_DNS_IP,
                  "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"containers": [{
                                   "name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.11.1",
                                   "args": ["-conf", "/etc/coredns/Corefile"],
                                   "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                             {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}]}]}}}},
    ]


def _nodes_ready(store: ResourceStore, topo: LabTopology, record: LabRecord) -> bool:
    for name, rec in record.processes.items():
        state = daemon_state(record.name, name)
        if not processes.is_alive(rec) or (state is not None and state.restarts):
            why = f" ({state.last_exit})" if state is not None and state.last_exit else ""
            raise LabError(f"{name} exited during start-up{why}; see {LabPaths(record.name).log_dir}/{name}.log")
    nodes, _rev = store.list("core", "Node")
    ready = {n["metadata"]["name"] for n in nodes
             if any(c.get("type") == "Ready" and c.get("status") == "True" for c in n.get("status", {}).get("conditions", []))}
    return all(n.name in ready for n in topo.nodes)


def _wait(cond: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise LabError(message)


def delete(lab: str, progress: Progress) -> list[str]:
    """Remove everything of a lab; returns what was removed (for the user)."""
    paths = LabPaths(lab)
    removed: list[str] = []
    record = load_record(lab)
    if record is not None:
        for name in ("relay", "kubelet", *[k for k in record.processes if k.startswith("agent-")], "operator", "etcd",
                     *[k for k in record.processes if k.startswith("frr-")]):
            rec = record.processes.get(name)
            if rec is not None and processes.is_alive(rec):
                progress(f"stopping {name}")
                processes.stop(rec)
                removed.append(f"process {name} ({rec.pid})")
    # Supervisors first (found by their state files), or they would restart what the sweep stops.
    supervisors = processes.pids_with_arg(os.path.dirname(state_path(lab, "x")) + "/")
    if supervisors:
        processes.stop_pids(supervisors, timeout=6)
        removed.append(f"{len(supervisors)} supervisors")
    names = lab_netns(lab)
    stray = processes.pids_in_netns([f"{NETNS_DIR}/{n}" for n in names])
    stray += [p for p in processes.pids_with_arg(paths.run_dir + "/") if p not in stray]
    for module in ("membrane.lab.kubelet", "membrane.lab.relay_main"):
        stray += [p for p in processes.pids_with_arg(f"{module} --lab {lab} ") if p not in stray]
    if stray:
        progress(f"stopping {len(stray)} lab processes")
        processes.stop_pids(stray)
        removed.append(f"{len(stray)} processes")
    if names:
        progress(f"deleting {len(names)} network namespaces")
    for n in names:
        subprocess.run(["ip", "netns", "del", n], capture_output=True)
        shutil.rmtree(f"/etc/netns/{n}", ignore_errors=True)
    removed += [f"netns {n}" for n in names]
    try:
        for d in os.listdir("/etc/netns"):
            if d.startswith(paths.netns_prefix):
                shutil.rmtree(f"/etc/netns/{d}", ignore_errors=True)
    except FileNotFoundError:
        pass
    if os.path.isdir(paths.bpffs_lab_dir):
        shutil.rmtree(paths.bpffs_lab_dir, ignore_errors=True)
        removed.append(f"bpffs {paths.bpffs_lab_dir}")
    if os.path.isdir(paths.run_dir):
        shutil.rmtree(paths.run_dir, ignore_errors=True)
        removed.append(f"run dir {paths.run_dir}")
    return removed
