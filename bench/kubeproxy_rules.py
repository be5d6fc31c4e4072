"""kube-proxy's rulesets for N ClusterIP Services × 10 endpoints, as the services benchmark loads them.

Two modes, each written the way kube-proxy hands it to the kernel:

* iptables mode: the nat table in ``iptables-restore`` format (KUBE-SERVICES → KUBE-SVC-* → KUBE-SEP-*,
  ``statistic --mode random`` rules, KUBE-MARK-MASQ and DNAT; every chain declared first, then the rules),
  as a full sync and as the partial sync of kube-proxy ≥ 1.28 (MinimizeIPTablesRestore);
* nftables mode (GA in Kubernetes 1.31): ``table ip kube-proxy`` as ``nft -f`` transactions in knftables'
  command syntax — the full sync that loads it and the partial sync kube-proxy sends when one Service
  gained one endpoint.

Chain names follow kube-proxy: iptables mode ``KUBE-SVC-``/``KUBE-SEP-`` + the first 16 base32 characters
of sha256 of the service port name, protocol (and endpoint); nftables mode ``service-``/``endpoint-`` + the
first 8 base32 characters of sha256 of ``ns/name/proto/port[__ip/port]``, a dash, then that text.
"""

from __future__ import annotations

import base64
import hashlib

BACKENDS = 10
CLUSTER_CIDR = "10.0.0.0/8"  # the pods: "local" traffic for the masquerade rules (--cluster-cidr)
MASQ_MARK = "0x4000"  # kube-proxy's default --masquerade-bit 14
NFT_TABLE = "ip kube-proxy"


def cluster_ip(i: int) -> str:
    return f"10.96.{i // 250}.{i % 250 + 1}"


def pod_ip(backend_id: int) -> str:
    return f"10.{1 + backend_id // 65536}.{backend_id // 256 % 256}.{backend_id % 256}"


class Cluster:
    """N Services (``default/svc-<i>:http``, port 80/TCP → 8080) with their backends by id."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.backends: list[list[int]] = [[i * BACKENDS + j + 1 for j in range(BACKENDS)] for i in range(n)]
        self.next_id = n * BACKENDS + 1

    def add_backend(self, i: int) -> None:
        self.backends[i].append(self.next_id)
        self.next_id += 1


# -- iptables mode: the nat table in iptables-restore format ----------------------------------

def _chain(prefix: str, *parts: str) -> str:
    """kube-proxy's iptables chain names: prefix + the first 16 base32 chars of sha256 of the parts."""
    digest = hashlib.sha256("".join(parts).encode()).digest()
    return prefix + base64.b32encode(digest).decode()[:16]


def ipt_service_chain(i: int) -> str:
    return _chain("KUBE-SVC-", f"default/svc-{i}:http", "tcp")


def ipt_endpoint_chain(i: int, backend_id: int) -> str:
    return _chain("KUBE-SEP-", f"default/svc-{i}:http", "tcp", f"{pod_ip(backend_id)}:8080")


def _top_level(cluster: Cluster) -> tuple[list[str], list[str]]:
    """(declarations, rules) of the chains kube-proxy always rewrites; one KUBE-SERVICES rule per Service."""
    chains = [":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]", ":KUBE-POSTROUTING - [0:0]",
              ":KUBE-MARK-MASQ - [0:0]"]
    rules = ["-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
             "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
             '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
             "-j MASQUERADE --random-fully",
             "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000"]
    for i in range(cluster.n):
        rules.append(f'-A KUBE-SERVICES -d {cluster_ip(i)}/32 -p tcp -m comment --comment "default/svc-{i}:http '
                     f'cluster IP" -m tcp --dport 80 -j {ipt_service_chain(i)}')
    rules.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last '
                 'rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
    return chains, rules


def _service_chains(cluster: Cluster, i: int, seps: list[int] | None = None) -> tuple[list[str], list[str]]:
    """(declarations, rules): KUBE-SVC-<i> (masquerade off-cluster clients, then one statistic rule per
    endpoint) and the KUBE-SEP chains of ``seps`` (default: all of its endpoints)."""
    svc, backends = ipt_service_chain(i), cluster.backends[i]
    seps = backends if seps is None else seps
    chains = [f":{svc} - [0:0]"] + [f":{ipt_endpoint_chain(i, b)} - [0:0]" for b in seps]
    rules = [f'-A {svc} ! -s {CLUSTER_CIDR} -d {cluster_ip(i)}/32 -p tcp -m comment --comment '
             f'"default/svc-{i}:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ']
    for k, b in enumerate(backends):
        left = len(backends) - k
        stat = "" if left == 1 else f" -m statistic --mode random --probability {1 / left:.11f}"
        rules.append(f'-A {svc} -m comment --comment "default/svc-{i}:http -> {pod_ip(b)}:8080"{stat} '
                     f"-j {ipt_endpoint_chain(i, b)}")
    for b in seps:
        sep = ipt_endpoint_chain(i, b)
        rules += [f'-A {sep} -s {pod_ip(b)}/32 -m comment --comment "default/svc-{i}:http" -j KUBE-MARK-MASQ',
                  f'-A {sep} -p tcp -m comment --comment "default/svc-{i}:http" -m tcp '
                  f"-j DNAT --to-destination {pod_ip(b)}:8080"]
    return chains, rules


def _ruleset(parts: list[tuple[list[str], list[str]]]) -> str:
    """kube-proxy's layout: every chain declaration first, then the rules."""
    chains = [c for part in parts for c in part[0]]
    rules = [r for part in parts for r in part[1]]
    return "\n".join(["*nat", *chains, *rules, "COMMIT", ""])


def full_ruleset(cluster: Cluster) -> str:
    return _ruleset([_top_level(cluster)] + [_service_chains(cluster, i) for i in range(cluster.n)])


def partial_ruleset(cluster: Cluster, changed: int) -> str:
    """kube-proxy ≥ 1.28 after one Service gained an endpoint (restored with --noflush)."""
    return _ruleset([_top_level(cluster), _service_chains(cluster, changed, seps=cluster.backends[changed][-1:])])


HOOKS = """*nat
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
COMMIT
"""


def rule_count(rules: str) -> int:
    return sum(1 for line in rules.splitlines() if line.startswith("-A "))


# -- nftables mode: table ip kube-proxy as nft -f transactions ---------------------------------

def _hashed(name: str) -> str:
    """kube-proxy nftables mode's chain name base: 8 base32 chars of sha256(name), '-', name."""
    return base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()[:8] + "-" + name


def nft_service_chain(i: int) -> str:
    return "service-" + _hashed(f"default/svc-{i}/tcp/http")


def nft_endpoint_chain(i: int, backend_id: int) -> str:
    return "endpoint-" + _hashed(f"default/svc-{i}/tcp/http__{pod_ip(backend_id)}/8080")


# (name, type, hook, priority): dstnat = -100, srcnat = 100, written as numbers like knftables does
_BASE_CHAINS = (
    ("filter-prerouting", "filter", "prerouting", -110), ("filter-input", "filter", "input", -110),
    ("filter-forward", "filter", "forward", -110), ("filter-output", "filter", "output", -110),
    ("filter-output-post-dnat", "filter", "output", -90), ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100), ("nat-postrouting", "nat", "postrouting", 100),
)
# (regular chain, base chain jumping to it, match in front of the jump)
_JUMPS = (
    ("nodeport-endpoints-check", "filter-input", "ct state new "),
    ("service-endpoints-check", "filter-input", "ct state new "),
    ("service-endpoints-check", "filter-forward", "ct state new "),
    ("service-endpoints-check", "filter-output", "ct state new "),
    ("firewall-check", "filter-prerouting", "ct state new "), ("firewall-check", "filter-output", "ct state new "),
    ("services", "nat-output", ""), ("services", "nat-prerouting", ""), ("masquerading", "nat-postrouting", ""),
    ("cluster-ips-check", "filter-forward", "ct state new "),
    ("cluster-ips-check", "filter-output-post-dnat", "ct state new "),
)
_VMAP_KEY = "ipv4_addr . inet_proto . inet_service : verdict"


def _nft_setup() -> list[str]:
    """The table, hook chains, top-level chains, sets and maps of a full sync (kube-proxy's first one)."""
    t = NFT_TABLE
    out = [f'add table {t} {{ comment "rules for kube-proxy" ; }}']
    out += [f"add chain {t} {name}\ndelete chain {t} {name}" for name, *_ in _BASE_CHAINS]
    for name, kind, hook, prio in _BASE_CHAINS:
        out += [f"add chain {t} {name} {{ type {kind} hook {hook} priority {prio} ; }}", f"flush chain {t} {name}"]
    created: set[str] = set()
    for dst, src, match in _JUMPS:
        if dst not in created:
            created.add(dst)
            out += [f"add chain {t} {dst}", f"flush chain {t} {dst}"]
        out.append(f"add rule {t} {src} {match}jump {dst}")
    for name in ("mark-for-masquerade",):
        out += [f"add chain {t} {name}", f"flush chain {t} {name}"]
    out += [f"add rule {t} mark-for-masquerade mark set mark or {MASQ_MARK}",
            f"add rule {t} masquerading mark and {MASQ_MARK} == 0 return",
            f"add rule {t} masquerading mark set mark xor {MASQ_MARK}",
            f"add rule {t} masquerading masquerade fully-random",
            f'add set {t} cluster-ips {{ type ipv4_addr ; comment "Active ClusterIPs" ; }}',
            f'add rule {t} cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic to invalid ports '
            'of ClusterIPs"',
            f'add set {t} nodeport-ips {{ type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }}',
            f"delete set {t} nodeport-ips",
            f"add map {t} no-endpoint-services {{ type {_VMAP_KEY} ; }}",
            f"add map {t} no-endpoint-nodeports {{ type inet_proto . inet_service : verdict ; }}",
            f"add chain {t} reject-chain", f"flush chain {t} reject-chain", f"add rule {t} reject-chain reject",
            f"add rule {t} service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
            f"add rule {t} nodeport-endpoints-check ip daddr != 127.0.0.0/8 meta l4proto . th dport "
            "vmap @no-endpoint-nodeports",
            f"add map {t} firewall-ips {{ type {_VMAP_KEY} ; }}",
            f"add rule {t} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips",
            f'add map {t} service-ips {{ type {_VMAP_KEY} ; comment "ClusterIP, ExternalIP and LoadBalancer IP '
            'traffic" ; }',
            f'add map {t} service-nodeports {{ type inet_proto . inet_service : verdict ; comment "NodePort '
            'traffic" ; }',
            f"add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips",
            f"add rule {t} services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport "
            "vmap @service-nodeports"]
    out += [f"flush {kind} {t} {name}" for kind, name in (
        ("set", "cluster-ips"), ("map", "service-ips"), ("map", "firewall-ips"), ("map", "no-endpoint-services"),
        ("map", "no-endpoint-nodeports"), ("map", "service-nodeports"))]
    return out


def _nft_service(cluster: Cluster, i: int, elements: bool) -> list[str]:
    """One service port as kube-proxy's sync writes it when the Service or its endpoints changed: every
    endpoint chain and the service chain added and flushed, (the map elements when new), then the rules."""
    t, svc, ip = NFT_TABLE, nft_service_chain(i), cluster_ip(i)
    eps = [(pod_ip(b), nft_endpoint_chain(i, b)) for b in cluster.backends[i]]
    out = [line for _, ep in eps for line in (f"add chain {t} {ep}", f"flush chain {t} {ep}")]
    out += [f"add chain {t} {svc}", f"flush chain {t} {svc}"]
    if elements:
        out += [f"add element {t} cluster-ips {{ {ip} }}",
                f"add element {t} service-ips {{ {ip} . tcp . 80 : goto {svc} }}"]
    out.append(f"add rule {t} {svc} ip daddr {ip} tcp dport 80 ip saddr != {CLUSTER_CIDR} jump mark-for-masquerade")
    vmap = ", ".join(f"{k} : goto {ep}" for k, (_, ep) in enumerate(eps))
    out.append(f"add rule {t} {svc} numgen random mod {len(eps)} vmap {{ {vmap} }}")
    for addr, ep in eps:
        out += [f"add rule {t} {ep} ip saddr {addr} jump mark-for-masquerade",
                f"add rule {t} {ep} meta l4proto tcp dnat to {addr}:8080"]
    return out


def nft_full(cluster: Cluster, chunk: int | None = None) -> list[str]:
    """kube-proxy nftables mode's first (full) sync of the whole table: one transaction, as kube-proxy
    sends it, or split into transactions of ``chunk`` Services each (the same end state)."""
    step = chunk or max(cluster.n, 1)
    scripts = []
    for start in range(0, cluster.n, step):
        lines = _nft_setup() if start == 0 else []
        for i in range(start, min(cluster.n, start + step)):
            lines += _nft_service(cluster, i, elements=True)
        scripts.append("\n".join(lines) + "\n")
    return scripts


def nft_partial(cluster: Cluster, changed: int) -> str:
    """The partial sync after Service ``changed`` gained one endpoint: its chains rewritten, the new
    endpoint chain among them; its map elements are unchanged, every other Service is skipped."""
    return "\n".join(_nft_service(cluster, changed, elements=False)) + "\n"


def nft_counts(script: str) -> tuple[int, int]:
    """(chains, rules) a transaction adds (a chain added twice, or added and deleted first, counts once)."""
    lines = script.splitlines()
    return (len({line.split()[4] for line in lines if line.startswith("add chain ")}),
            sum(1 for line in lines if line.startswith("add rule ")))
