"""Cluster DNS (the lab's CoreDNS): answers ``cluster.local`` from the store, forwards the rest.

``python -m membrane.lab.workloads.dns --lab LAB [--port 53] [--upstream IP]`` follows the lab's Services,
EndpointSlices and Pods through etcd mirrors (the unix socket is a file, so this works from a pod) and
answers, as CoreDNS's kubernetes plugin does (``pods insecure``, TTL 30):

- ``<svc>.<ns>.svc.cluster.local`` A: the ClusterIP; for a headless service the ready endpoint IPs
  (all of them with ``publishNotReadyAddresses``); an ExternalName service is a CNAME;
- ``<host>.<svc>.<ns>.svc.cluster.local`` A for each endpoint of a headless service: the pod's
  ``spec.hostname`` (with ``spec.subdomain`` = the service) or the endpoint's hostname, else the IP dashed;
- SRV ``_<port>._<proto>.<svc>.<ns>.svc.cluster.local`` (and SRV of the service name: every named port);
- ``<a-b-c-d>.<ns>.pod.cluster.local`` A a.b.c.d; PTR for ClusterIPs and headless endpoints;
- NXDOMAIN for any other name in the cluster domain, NOERROR/no data for a name without that type;
- everything else is forwarded to ``--upstream`` (default: the lab world's resolver) with a short
  timeout, SERVFAIL if it does not answer.

``--world --record NAME=IP ...`` serves only those static names (the "internet" resolver of
membrane.lab.world). The CoreDNS image's ``-conf FILE`` is accepted and ignored; ``--lab`` defaults to
$MEMBRANE_LAB. Search domains and ndots are the client's business (the pod's resolv.conf).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dnslib import AAAA, CNAME, PTR, QTYPE, RCODE, RR, SOA, SRV, A, DNSRecord

from membrane.lab.workloads import runtime

TTL = 30
CLUSTER_DOMAIN = "cluster.local"
DEFAULT_UPSTREAM = "198.51.100.53"  # the world namespace's resolver (membrane.lab.world.WORLD_DNS_IP)
FORWARD_TIMEOUT = 2.0
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
Record = tuple[int, Any]  # (QTYPE, rdata)
Resolver = Callable[[DNSRecord], "DNSRecord | None"]


def _norm(name: object) -> str:
    return str(name).rstrip(".").lower()


def _dashed(ip: str) -> str:
    return ip.replace(".", "-").replace(":", "-")


def _reverse(ip: str) -> str:
    return _norm(ipaddress.ip_address(ip).reverse_pointer)


def _a(ip: str) -> Record:
    return (QTYPE.AAAA, AAAA(ip)) if ":" in ip else (QTYPE.A, A(ip))


class Zone:
    """Names to records; ``answer`` builds the reply to a query (None: not ours, forward it)."""

    def __init__(self, domain: str | None) -> None:
        self.domain = domain  # answers NXDOMAIN under it; None: only the names held
        self.names: dict[str, list[Record]] = {}

    def add(self, name: str, record: Record) -> None:
        records = self.names.setdefault(_norm(name), [])
        if record not in records:
            records.append(record)

    def authoritative_for(self, name: str) -> bool:
        return self.domain is not None and (name == self.domain or name.endswith("." + self.domain))

    def dynamic(self, name: str) -> list[Record] | None:
        """Records computed from the name itself (pod records); None if it is not such a name."""
        return None

    def answer(self, request: DNSRecord) -> DNSRecord | None:
        if not request.questions:
            return None
        q = request.q
        name = _norm(q.qname)
        records = self.names.get(name)
        if records is None:
            records = self.dynamic(name)
        if records is None and not self.authoritative_for(name):
            return None
        reply = request.reply(ra=1, aa=1)
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
        else:
            wanted = [r for r in records if q.qtype in (r[0], QTYPE.ANY)]
            if not wanted:
                wanted = [r for r in records if r[0] == QTYPE.CNAME]
            for rtype, rdata in wanted:
                reply.add_answer(RR(q.qname, rtype, rdata=rdata, ttl=TTL))
                if rtype == QTYPE.SRV:
                    for atype, adata in self.names.get(_norm(rdata.target), []):
                        if atype in (QTYPE.A, QTYPE.AAAA):
                            reply.add_ar(RR(rdata.target, atype, rdata=adata, ttl=TTL))
        if not reply.rr and self.domain is not None and self.authoritative_for(name):
            reply.add_auth(RR(self.domain, QTYPE.SOA, ttl=TTL, rdata=SOA(
                f"ns.dns.{self.domain}", f"hostmaster.{self.domain}", (1, 7200, 1800, 86400, TTL))))
        return reply


class ClusterZone(Zone):
    """The cluster domain as built from Service, EndpointSlice and Pod objects (plain dicts)."""

    def __init__(self, services: Iterable[Mapping[str, Any]], slices: Iterable[Mapping[str, Any]],
                 pods: Iterable[Mapping[str, Any]], domain: str = CLUSTER_DOMAIN) -> None:
        super().__init__(_norm(domain))
        self.reverse: dict[str, str] = {}
        slices = list(slices)
        pod_hostnames = {}
        for pod in pods:
            spec, status = pod.get("spec") or {}, pod.get("status") or {}
            ns = (pod.get("metadata") or {}).get("namespace") or "default"
            host, sub = spec.get("hostname"), spec.get("subdomain")
            for ip in [p.get("ip") for p in status.get("podIPs") or []] or [status.get("podIP")]:
                if ip and host and sub:
                    pod_hostnames[(ns, sub, ip)] = host
        for svc in services:
            self._add_service(svc, slices, pod_hostnames)

    def _add_service(self, svc: Mapping[str, Any], slices: list[Mapping[str, Any]],
                     pod_hostnames: Mapping[tuple[str, str, str], str]) -> None:
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        name, ns = meta.get("name"), meta.get("namespace") or "default"
        if not name:
            return
        base = f"{name}.{ns}.svc.{self.domain}"
        if spec.get("type") == "ExternalName":
            if spec.get("externalName"):
                self.add(base, (QTYPE.CNAME, CNAME(spec["externalName"])))
            return
        cluster_ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip and ip != "None"]
        if cluster_ips:
            for ip in cluster_ips:
                self.add(base, _a(ip))
                self.reverse.setdefault(_reverse(ip), base)
            self._add_srv(base, [(p, base) for p in spec.get("ports") or []])
            return
        if spec.get("clusterIP") != "None" and spec.get("clusterIP"):
            return
        any_state = bool(spec.get("publishNotReadyAddresses"))
        for eps in slices:
            labels = (eps.get("metadata") or {}).get("labels") or {}
            if labels.get(SERVICE_NAME_LABEL) != name or ((eps.get("metadata") or {}).get("namespace")
                                                           or "default") != ns:
                continue
            ports = eps.get("ports") or []
            for ep in eps.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready") is False and not any_state:
                    continue
                for ip in ep.get("addresses") or []:
                    host = pod_hostnames.get((ns, name, ip)) or ep.get("hostname") or _dashed(ip)
                    target = f"{host}.{base}"
                    self.add(base, _a(ip))
                    self.add(target, _a(ip))
                    self.reverse.setdefault(_reverse(ip), target)
                    self._add_srv(base, [(p, target) for p in ports])

    def _add_srv(self, base: str, ports: list[tuple[Mapping[str, Any], str]]) -> None:
        for port, target in ports:
            if not port.get("name") or not port.get("port"):
                continue
            srv = (QTYPE.SRV, SRV(0, 100, int(port["port"]), target))
            self.add(f"_{port['name']}._{str(port.get('protocol') or 'TCP').lower()}.{base}", srv)
            self.add(base, srv)

    def dynamic(self, name: str) -> list[Record] | None:
        if name in self.reverse:
            return [(QTYPE.PTR, PTR(self.reverse[name]))]
        parts = name.split(".")
        if len(parts) == 2 + len(self.domain.split(".")) + 1 and parts[2] == "pod" and \
                name.endswith("." + self.domain):
            try:
                return [_a(str(ipaddress.IPv4Address(parts[0].replace("-", "."))))]
            except ValueError:
                return None
        return None


class StaticZone(Zone):
    """Fixed names (the world's resolver): NXDOMAIN for every other name, nothing forwarded."""

    def __init__(self, records: Mapping[str, str]) -> None:
        super().__init__(None)
        for name, ip in records.items():
            self.add(name, _a(ip))

    def authoritative_for(self, name: str) -> bool:
        return True


def parse_records(items: Iterable[str]) -> dict[str, str]:
    """``NAME=IP`` pairs; ValueError naming the bad one."""
    out = {}
    for item in items:
        name, eq, ip = item.partition("=")
        if not eq or not name:
            raise ValueError(f"--record {item!r}: expected NAME=IP")
        out[_norm(name)] = str(ipaddress.ip_address(ip))
    return out


class StoreZones:
    """Follows the lab's Services, EndpointSlices and Pods; ``current()`` rebuilds when they change."""

    KINDS = (("core", "Service"), ("discovery.k8s.io", "EndpointSlice"), ("core", "Pod"))

    def __init__(self, lab: str, cluster: str, domain: str = CLUSTER_DOMAIN) -> None:
        from membrane.lab.paths import LabPaths
        from membrane.store.etcd import EtcdClient
        from membrane.store.layout import StoreLayout
        from membrane.store.mirror import Mirror

        client = EtcdClient(LabPaths(lab).etcd_endpoint)
        layout = StoreLayout(cluster)
        self.domain = domain
        self.mirrors = [Mirror(client, layout.resource_prefix(g, k), name=f"dns-{k}") for g, k in self.KINDS]
        self._lock = threading.Lock()
        self._zone = ClusterZone([], [], [], domain)
        self._revisions: tuple[int, ...] = ()

    def start(self, timeout: float = 10.0) -> None:
        for mirror in self.mirrors:
            mirror.start()
        for mirror in self.mirrors:
            mirror.wait_synced(timeout)

    def current(self) -> ClusterZone:
        with self._lock:
            revisions = tuple(m.revision for m in self.mirrors)
            if revisions != self._revisions:
                objects = [[json.loads(kv.value) for kv in m.items()] for m in self.mirrors]
                self._zone = ClusterZone(*objects, domain=self.domain)
                self._revisions = revisions
            return self._zone

    def answer(self, request: DNSRecord) -> DNSRecord | None:
        return self.current().answer(request)


class DnsServer:
    """UDP and TCP on one port; answers from ``resolve`` or forwards the raw query upstream."""

    def __init__(self, resolve: Resolver, upstream: str | None, timeout: float = FORWARD_TIMEOUT) -> None:
        self.resolve, self.upstream, self.timeout = resolve, upstream, timeout

    def handle(self, data: bytes, tcp: bool = False) -> bytes | None:
        try:
            request = DNSRecord.parse(data)
        except Exception:  # noqa: BLE001 - dnslib raises several kinds on garbage; drop it like CoreDNS
            return None
        try:
            reply = self.resolve(request)
        except Exception as exc:  # noqa: BLE001 - a bad object must not take the server down
            runtime.log(f"dns: answering {request.q.qname}: {exc}")
            reply = request.reply(ra=1)
            reply.header.rcode = RCODE.SERVFAIL
        if reply is None:
            forwarded = self.forward(data, tcp)
            if forwarded is not None:
                return forwarded
            reply = request.reply(ra=1)
            reply.header.rcode = RCODE.SERVFAIL
        packed = reply.pack()
        limit = max(512, next((rr.rclass for rr in request.ar if rr.rtype == QTYPE.OPT), 512))
        if not tcp and len(packed) > limit:
            reply.rr, reply.auth, reply.ar = [], [], []
            reply.header.tc = 1
            packed = reply.pack()
        return packed

    def forward(self, data: bytes, tcp: bool) -> bytes | None:
        if not self.upstream:
            return None
        try:
            if tcp:
                with socket.create_connection((self.upstream, 53), timeout=self.timeout) as conn:
                    conn.sendall(struct.pack("!H", len(data)) + data)
                    return _read_tcp_message(conn)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect((self.upstream, 53))
                sock.send(data)
                while True:
                    answer = sock.recv(65535)
                    if answer[:2] == data[:2]:
                        return answer
        except OSError as exc:
            runtime.log(f"dns: forwarding to {self.upstream}: {exc}")
            return None

    def serve_udp(self, sock: socket.socket) -> None:
        def one(data: bytes, peer: tuple[str, int]) -> None:
            out = self.handle(data)
            if out is not None:
                sock.sendto(out, peer)

        while True:
            data, peer = sock.recvfrom(65535)
            threading.Thread(target=one, args=(data, peer), daemon=True).start()

    def serve_tcp(self, listener: socket.socket) -> None:
        def conn_loop(conn: socket.socket) -> None:
            with conn:
                conn.settimeout(10)
                try:
                    while (data := _read_tcp_message(conn)) is not None:
                        out = self.handle(data, tcp=True)
                        if out is None:
                            return
                        conn.sendall(struct.pack("!H", len(out)) + out)
                except OSError:
                    return

        while True:
            conn, _peer = listener.accept()
            threading.Thread(target=conn_loop, args=(conn,), daemon=True).start()


def _read_tcp_message(conn: socket.socket) -> bytes | None:
    head = _read_exact(conn, 2)
    return None if head is None else _read_exact(conn, struct.unpack("!H", head)[0])


def _read_exact(conn: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _cluster_name(lab: str) -> str:
    try:
        from membrane.lab.record import load_record

        record = load_record(lab)
        return record.topology.config.cluster_name if record is not None else "default"
    except Exception:  # noqa: BLE001 - an unreadable record: the default cluster name
        return "default"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="dns", description="cluster DNS for a membrane lab")
    p.add_argument("--lab", default=os.environ.get("MEMBRANE_LAB", ""))
    p.add_argument("--cluster", default="", help="cluster name (default: the lab's)")
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--address", default="")
    p.add_argument("--upstream", default=os.environ.get("MEMBRANE_DNS_UPSTREAM", DEFAULT_UPSTREAM))
    p.add_argument("--domain", default=CLUSTER_DOMAIN)
    p.add_argument("--world", action="store_true", help="serve only the --record names")
    p.add_argument("--record", action="append", default=[], metavar="NAME=IP")
    p.add_argument("-conf", "--conf", default="", help="CoreDNS Corefile (ignored)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    zone: Zone | StoreZones
    if args.world:
        try:
            zone = StaticZone(parse_records(args.record))
        except ValueError as exc:
            runtime.fatal(f"dns: {exc}", 2)
        upstream = None
    else:
        if not args.lab:
            runtime.fatal("dns: --lab (or $MEMBRANE_LAB) is required", 2)
        zone = StoreZones(args.lab, args.cluster or _cluster_name(args.lab), args.domain)
        upstream = args.upstream or None
    address = args.address or runtime.listen_address()
    try:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((address, args.port))
        tcp = socket.create_server((address, args.port), reuse_port=False)
    except OSError as exc:
        runtime.fatal(f"dns: listen {address}:{args.port}: {exc}")
    if isinstance(zone, StoreZones):
        zone.start()
    server = DnsServer(zone.answer, upstream)
    runtime.log(f"dns: serving on {address}:{args.port} (upstream {upstream or 'none'})")
    runtime.run_until_terminated([lambda: server.serve_udp(udp), lambda: server.serve_tcp(tcp)])


if __name__ == "__main__":
    main()
