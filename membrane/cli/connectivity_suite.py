"""The tests of ``membrane connectivity test``: cilium-cli's test names, the scenarios each runs, what
each action must see under the test's policies, and which tests need a feature Membrane lacks.

Pure: given the deployment's addresses (:class:`Topology`) it yields :class:`ActionSpec` values, each
with where to run a command, the command, and whether it must succeed; the runner executes them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from membrane.cli.connectivity_policies import DENIED_CIDR, NAMESPACE, OTHER_CIDR, OTHER_WORLD_NAME, POLICIES

ECHO_PORT = 8080
HOST_PORT = 4000
WORLD_NAME = "one.one.one.one"
CLIENTS = ("client", "client2")
ECHOES = ("echo-same-node", "echo-other-node")


@dataclass(frozen=True)
class PodRef:
    name: str
    ip: str
    node: str


@dataclass(frozen=True)
class Topology:
    """Where the deployment runs: role -> pod, node -> IP, echo Service -> (ClusterIP, NodePort)."""

    pods: dict[str, PodRef]
    nodes: dict[str, str]
    services: dict[str, tuple[str, int]]


@dataclass(frozen=True)
class ActionSpec:
    scenario: str
    src: str  # role: client, client2, host, remote-node, world
    dst: str  # role: echo-same-node, echo-other-node, client, client2, host, remote-node, world, cidr-…, kube-dns
    place: tuple[str, str]  # ("pod", name) | ("node", name) | ("world", "")
    argv: tuple[str, ...]
    src_text: str
    dst_text: str
    expect_ok: bool = True
    src_ip: str = ""  # set where both ends are pod IPs, for flow validation
    dst_ip: str = ""
    fail_code: int = 0  # the exit code an expected failure must have (22 HTTP error, 35 TLS error); 0 = any
    port: int = 0  # the destination port, path and whether the secret header is sent (L7 expectations)
    path: str = ""
    header: bool = False


CURL_HTTP_ERROR, CURL_SSL_ERROR = 22, 35  # curl --fail on an HTTP error (403, 401); a TLS handshake failure


def _curl(url: str, *opts: str) -> tuple[str, ...]:
    return ("curl", "-sS", "-o", "/dev/null", "--fail", "--connect-timeout", "2", "--max-time", "4", *opts, url)


def _ping(ip: str) -> tuple[str, ...]:
    return ("ping", "-c", "1", "-W", "2", ip)


def _pod_text(t: Topology, role: str) -> str:
    return f"{NAMESPACE}/{t.pods[role].name} ({t.pods[role].ip})"


def _pod_place(t: Topology, role: str) -> tuple[str, str]:
    return ("pod", t.pods[role].name)


def _pod_to_pod(t: Topology) -> list[ActionSpec]:
    return [ActionSpec("pod-to-pod", s, d, _pod_place(t, s), _curl(f"http://{t.pods[d].ip}:{ECHO_PORT}/"),
                       _pod_text(t, s), f"{NAMESPACE}/{t.pods[d].name} ({t.pods[d].ip}:{ECHO_PORT})",
                       src_ip=t.pods[s].ip, dst_ip=t.pods[d].ip, port=ECHO_PORT, path="/")
            for s in CLIENTS for d in ECHOES]


def _client_to_client(t: Topology) -> list[ActionSpec]:
    return [ActionSpec("client-to-client", s, d, _pod_place(t, s), _ping(t.pods[d].ip), _pod_text(t, s),
                       _pod_text(t, d), src_ip=t.pods[s].ip, dst_ip=t.pods[d].ip)
            for s, d in (("client", "client2"), ("client2", "client"))]


def _pod_to_service(t: Topology) -> list[ActionSpec]:
    return [ActionSpec("pod-to-service", s, d, _pod_place(t, s),
                       _curl(f"http://{t.services[d][0]}:{ECHO_PORT}/"), _pod_text(t, s),
                       f"{NAMESPACE}/{d} ({t.services[d][0]}:{ECHO_PORT})") for s in CLIENTS for d in ECHOES]


def _pod_to_hostport(t: Topology) -> list[ActionSpec]:
    out = []
    for d in ECHOES:
        ip = t.nodes[t.pods[d].node]
        out.append(ActionSpec("pod-to-hostport", "client", d, _pod_place(t, "client"),
                              _curl(f"http://{ip}:{HOST_PORT}/"), _pod_text(t, "client"),
                              f"{t.pods[d].node} ({ip}:{HOST_PORT}) -> {NAMESPACE}/{t.pods[d].name}"))
    return out


def _pod_to_nodeport(t: Topology) -> list[ActionSpec]:
    port = t.services["echo-other-node"][1]
    local = t.pods["client"].node
    return [ActionSpec("pod-to-nodeport", "client", "host" if node == local else "remote-node",
                       _pod_place(t, "client"), _curl(f"http://{t.nodes[node]}:{port}/"), _pod_text(t, "client"),
                       f"{node} ({t.nodes[node]}:{port}) -> {NAMESPACE}/echo-other-node")
            for node in sorted({local, t.pods["echo-other-node"].node})]


def _pod_to_world(t: Topology) -> list[ActionSpec]:
    return [ActionSpec("pod-to-world", s, "world", _pod_place(t, s), _curl(f"http://{WORLD_NAME}/"),
                       _pod_text(t, s), f"{WORLD_NAME}:80") for s in CLIENTS]


def _pod_to_world_2(t: Topology) -> list[ActionSpec]:
    """The world's other name, which a toFQDNs on WORLD_NAME does not select."""
    return [ActionSpec("pod-to-world-2", s, "world", _pod_place(t, s), _curl(f"http://{OTHER_WORLD_NAME}/"),
                       _pod_text(t, s), f"{OTHER_WORLD_NAME}:80") for s in CLIENTS]


def _pod_to_cidr(t: Topology) -> list[ActionSpec]:
    out = []
    for s in CLIENTS:
        for role, cidr in (("cidr-denied", DENIED_CIDR), ("cidr-other", OTHER_CIDR)):
            ip = cidr.split("/")[0]
            out.append(ActionSpec("pod-to-cidr", s, role, _pod_place(t, s), _curl(f"http://{ip}/"),
                                  _pod_text(t, s), f"{ip}:80"))
    return out


def _pod_to_host(t: Topology) -> list[ActionSpec]:
    local = t.pods["client"].node
    return [ActionSpec("pod-to-host", "client", "host" if node == local else "remote-node",
                       _pod_place(t, "client"), _ping(ip), _pod_text(t, "client"), f"{node} ({ip})")
            for node, ip in sorted(t.nodes.items())]


def _host_to_pod(t: Topology) -> list[ActionSpec]:
    out = []
    for d in ECHOES:
        pod = t.pods[d]
        for node, ip in sorted(t.nodes.items()):
            out.append(ActionSpec("host-to-pod", "host" if node == pod.node else "remote-node", d, ("node", node),
                                  _curl(f"http://{pod.ip}:{ECHO_PORT}/"), f"{node} ({ip})",
                                  f"{NAMESPACE}/{pod.name} ({pod.ip}:{ECHO_PORT})"))
    return out


def _node_to_node(t: Topology) -> list[ActionSpec]:
    names = sorted(t.nodes)
    pairs = [(a, names[(i + 1) % len(names)]) for i, a in enumerate(names)] if len(names) > 1 else []
    return [ActionSpec("node-to-node", "host", "remote-node", ("node", a), _ping(t.nodes[b]),
                       f"{a} ({t.nodes[a]})", f"{b} ({t.nodes[b]})") for a, b in pairs]


def _outside_to_nodeport(t: Topology) -> list[ActionSpec]:
    port = t.services["echo-same-node"][1]
    return [ActionSpec("outside-to-nodeport", "world", "echo-same-node", ("world", ""),
                       _curl(f"http://{ip}:{port}/"), "world", f"{node} ({ip}:{port}) -> {NAMESPACE}/echo-same-node")
            for node, ip in sorted(t.nodes.items())]


def _pod_to_dns(t: Topology) -> list[ActionSpec]:
    name = f"echo-same-node.{NAMESPACE}.svc.cluster.local"
    return [ActionSpec("dns-lookup", s, "kube-dns", _pod_place(t, s), ("nslookup", "-timeout=2", "-retry=1", name),
                       _pod_text(t, s), f"kube-system/kube-dns ({name})") for s in CLIENTS]


def _pod_to_world_tls(t: Topology, name: str = WORLD_NAME) -> list[ActionSpec]:
    """cilium-cli's PodToWorld: http, https and https /index.html to the name (``-k``: the lab world's
    certificate is made at its start, no pod trusts it)."""
    out = []
    for s in CLIENTS:
        for url, port, opts in ((f"http://{name}", 80, ()), (f"https://{name}", 443, ("-k",)),
                                (f"https://{name}/index.html", 443, ("-k",))):
            out.append(ActionSpec("pod-to-world", s, "world", _pod_place(t, s), _curl(url, *opts), _pod_text(t, s),
                                  f"{url.split('://')[1].split('/')[0]}:{port}", port=port,
                                  path="/" + url.split("/", 3)[3] if url.count("/") > 2 else "/"))
    return out


ECHO_LABELS = {"echo-same-node": "other", "echo-other-node": "first"}  # cilium-cli's extra echo labels (=echo)


def _with_endpoints(method: str = "", path: str = "", echo: str = "") -> Callable[[Topology], list[ActionSpec]]:
    """cilium-cli's PodToPodWithEndpoints: each client curls /public and /private (then /private with
    ``X-Very-Secret-Token: 42``), or ``path``, on each echo (or the one whose extra label is ``echo``)."""

    def scenario(t: Topology) -> list[ActionSpec]:
        out = []
        for s in CLIENTS:
            for d in ECHOES:
                if echo and ECHO_LABELS[d] != echo:
                    continue
                base = f"http://{t.pods[d].ip}:{ECHO_PORT}"
                for p in [path] if path else ["public", "private"]:
                    for header in (False, True) if p == "private" else (False,):
                        opts = (("-X", method) if method else ()) + (("-H", "X-Very-Secret-Token: 42") if header else ())
                        out.append(ActionSpec("pod-to-pod-with-endpoints", s, d, _pod_place(t, s),
                                              _curl(f"{base}/{p}", *opts), _pod_text(t, s),
                                              f"{NAMESPACE}/{t.pods[d].name} ({base}/{p})", src_ip=t.pods[s].ip,
                                              dst_ip=t.pods[d].ip, port=ECHO_PORT, path=f"/{p}", header=header))
        return out

    return scenario


SCENARIOS: dict[str, Callable[[Topology], list[ActionSpec]]] = {
    "pod-to-pod": _pod_to_pod, "client-to-client": _client_to_client, "pod-to-service": _pod_to_service,
    "pod-to-hostport": _pod_to_hostport, "pod-to-nodeport": _pod_to_nodeport, "pod-to-world": _pod_to_world, "pod-to-world-2": _pod_to_world_2,
    "pod-to-cidr": _pod_to_cidr, "pod-to-host": _pod_to_host, "host-to-pod": _host_to_pod,
    "node-to-node": _node_to_node, "outside-to-nodeport": _outside_to_nodeport, "dns-lookup": _pod_to_dns,
    "pod-to-world-tls": _pod_to_world_tls,
    "pod-to-world-tls-2": lambda t: _pod_to_world_tls(t, OTHER_WORLD_NAME),
    "pod-to-pod-with-endpoints": _with_endpoints(),
    "pod-to-pod-with-endpoints-post-other": _with_endpoints("POST", echo="other"),
    "pod-to-pod-with-endpoints-first": _with_endpoints(echo="first"),
    "pod-to-pod-with-endpoints-auth": _with_endpoints("POST", "auth-header-required"),
}

Expect = Callable[[ActionSpec], bool | int]  # True: must succeed; False: must fail; an int: fail with that exit code


def _all(_a: ActionSpec) -> bool:
    return True


def _none(_a: ActionSpec) -> bool:
    return False


@dataclass(frozen=True)
class ConnTest:
    name: str
    scenarios: tuple[str, ...]
    expect: Expect = _all
    missing: str = ""  # the feature Membrane lacks, for a test that is always skipped
    policies: tuple[str, ...] = field(default=())

    def actions(self, topo: Topology) -> list[ActionSpec]:
        out = []
        for scenario in self.scenarios:
            for spec in SCENARIOS[scenario](topo):
                want = self.expect(spec)
                code = 0 if isinstance(want, bool) else want
                out.append(ActionSpec(**{**spec.__dict__, "expect_ok": want is True, "fail_code": code}))
        return out


def _test(name: str, scenarios: str, expect: Expect = _all) -> ConnTest:
    return ConnTest(name, tuple(scenarios.split()), expect, policies=tuple(POLICIES.get(name, ())))


def _missing(name: str, feature: str) -> ConnTest:
    return ConnTest(name, (), missing=feature)


def _echo_ingress_l7(a: ActionSpec) -> bool | int:
    """Only client2 may GET; /private needs the secret header (403 otherwise); client: ingress default deny."""
    if a.src != "client2":
        return False
    return CURL_HTTP_ERROR if a.path == "/private" and not a.header else True


def _client_egress_l7(a: ActionSpec) -> bool | int:
    """client2: GET / on echo:8080 and one.one.one.one:80 (other paths 403), not 443; client: egress default deny."""
    if a.src != "client2" or a.port not in (80, ECHO_PORT):
        return False
    return a.path in ("", "/") or CURL_HTTP_ERROR


_POD_SVC = "pod-to-pod pod-to-service"
_TLS_INTERCEPTION = "TLS interception (terminatingTLS/originatingTLS)"
TESTS: tuple[ConnTest, ...] = (
    _test("no-policies", "pod-to-pod client-to-client pod-to-service pod-to-hostport pod-to-world pod-to-cidr "
          "pod-to-host host-to-pod dns-lookup"),
    _test("no-policies-extra", "pod-to-nodeport node-to-node"),
    _test("no-policies-from-outside", "outside-to-nodeport"),
    _test("pod-to-service", "pod-to-service"),
    _test("pod-to-hostport", "pod-to-hostport"),
    _test("node-to-node", "node-to-node"),
    _test("allow-all-except-world", "pod-to-pod client-to-client pod-to-service pod-to-cidr pod-to-world",
          lambda a: a.scenario not in ("pod-to-cidr", "pod-to-world")),
    _test("client-ingress", "client-to-client pod-to-pod", lambda a: a.scenario == "pod-to-pod" or a.src == "client2"),
    _test("client-ingress-knp", "client-to-client pod-to-pod",
          lambda a: a.scenario == "pod-to-pod" or a.src == "client2"),
    _test("all-ingress-deny", "pod-to-pod client-to-client pod-to-service pod-to-cidr",
          lambda a: a.scenario == "pod-to-cidr"),
    _test("all-ingress-deny-knp", "pod-to-pod client-to-client pod-to-service pod-to-cidr",
          lambda a: a.scenario == "pod-to-cidr"),
    _test("all-egress-deny", "pod-to-pod client-to-client pod-to-cidr dns-lookup", _none),
    _test("all-egress-deny-knp", "pod-to-pod client-to-client pod-to-cidr dns-lookup", _none),
    _test("all-entities-deny", "pod-to-pod pod-to-service pod-to-cidr", _none),
    _test("cluster-entity", "pod-to-pod pod-to-service pod-to-cidr", lambda a: a.scenario != "pod-to-cidr"),
    _test("host-entity-egress", "pod-to-host pod-to-pod", lambda a: a.dst == "host"),
    _test("echo-ingress", _POD_SVC),
    _test("echo-ingress-knp", _POD_SVC),
    _test("client-ingress-icmp", "client-to-client"),
    _test("client-egress", "pod-to-pod pod-to-cidr", lambda a: a.scenario == "pod-to-pod"),
    _test("client-egress-knp", "pod-to-pod pod-to-cidr", lambda a: a.scenario == "pod-to-pod"),
    _test("client-egress-expression", "pod-to-pod pod-to-cidr", lambda a: a.scenario == "pod-to-pod"),
    _test("client-egress-expression-knp", "pod-to-pod pod-to-cidr", lambda a: a.scenario == "pod-to-pod"),
    _test("client-with-service-account-egress-to-echo", "pod-to-pod pod-to-cidr",
          lambda a: a.scenario == "pod-to-pod" or a.src == "client2"),
    _test("client-egress-to-echo-service-account", "pod-to-pod", lambda a: a.dst == "echo-same-node"),
    _test("to-entities-world", "pod-to-world pod-to-cidr pod-to-pod", lambda a: a.scenario != "pod-to-pod"),
    _test("to-cidr-external", "pod-to-cidr pod-to-pod", lambda a: a.dst == "cidr-other"),
    _test("to-cidr-external-knp", "pod-to-cidr pod-to-pod", lambda a: a.dst == "cidr-other"),
    _missing("from-cidr-host-netns", "policy-cidr-match-mode=nodes"),
    _test("echo-ingress-from-other-client-deny", _POD_SVC, lambda a: a.src != "client2"),
    _test("client-ingress-from-other-client-icmp-deny", "client-to-client", lambda a: a.src != "client2"),
    _test("client-egress-to-echo-deny", "pod-to-pod", lambda a: a.dst != "echo-same-node"),
    _test("client-ingress-to-echo-named-port-deny", _POD_SVC, _none),
    _test("client-egress-to-echo-expression-deny", "pod-to-pod", lambda a: a.dst != "echo-same-node"),
    _test("client-with-service-account-egress-to-echo-deny", "pod-to-pod", lambda a: a.src == "client2"),
    _test("client-egress-to-echo-service-account-deny", "pod-to-pod", lambda a: a.dst != "echo-same-node"),
    _test("client-egress-to-cidr-deny", "pod-to-cidr", lambda a: a.dst != "cidr-denied"),
    _missing("health", "cilium-health endpoint probes"),
    _missing("north-south-loadbalancing", "LoadBalancer VIPs reachable from outside with a client pod"),
    _missing("pod-to-pod-encryption", "encryption (WireGuard/IPsec)"),
    _missing("node-to-node-encryption", "encryption (WireGuard/IPsec)"),
    _missing("egress-gateway", "egress gateway"),
    _missing("pod-to-ingress-service", "ingress controller"),
    _missing("host-firewall-ingress", "host firewall"),
    _missing("host-firewall-egress", "host firewall"),
    _missing("local-redirect-policy", "local redirect policy"),
    _missing("echo-ingress-auth-always-fail", "mutual authentication"),
    _missing("echo-ingress-mutual-auth-spiffe", "mutual authentication"),
    _test("dns-only", "dns-lookup pod-to-pod pod-to-world", lambda a: a.scenario == "dns-lookup"),
    _test("to-fqdns", "pod-to-world pod-to-world-2 dns-lookup", lambda a: a.scenario != "pod-to-world-2"),
    _test("echo-ingress-l7", "pod-to-pod-with-endpoints", _echo_ingress_l7),
    _test("echo-ingress-l7-named-port", "pod-to-pod-with-endpoints", _echo_ingress_l7),
    # client: egress default deny under the DNS-only policy; client2: POST to other:echo only (GET first:echo: 403)
    _test("client-egress-l7-method", "pod-to-pod-with-endpoints-post-other pod-to-pod-with-endpoints-first",
          lambda a: a.src == "client2" and (a.dst == "echo-same-node" or CURL_HTTP_ERROR)),
    _test("client-egress-l7", "pod-to-pod pod-to-world-tls", _client_egress_l7),
    _test("client-egress-l7-named-port", "pod-to-pod pod-to-world-tls", _client_egress_l7),
    _missing("client-egress-l7-tls-headers", _TLS_INTERCEPTION),
    _test("client-egress-l7-set-header", "pod-to-pod-with-endpoints-auth",
          lambda a: True if a.src == "client2" else CURL_HTTP_ERROR),  # client: no policy, json-mock's 401
    _test("client-egress-tls-sni", "pod-to-world-tls", lambda a: a.port == 443),
    _test("client-egress-tls-sni-denied", "pod-to-world-tls", lambda a: CURL_SSL_ERROR if a.port == 443 else False),
    _missing("bgp-control-plane-v1", "BGP control plane"),
)


def compile_filters(patterns: list[str]) -> tuple[list[re.Pattern[str]], list[re.Pattern[str]]]:
    """``--test REGEX`` (run) and ``--test '!REGEX'`` (leave out); raises re.error for a bad one."""
    run, leave = [], []
    for p in patterns:
        (leave if p.startswith("!") else run).append(re.compile(p.removeprefix("!")))
    return run, leave


def selected(name: str, run: list[re.Pattern[str]], leave: list[re.Pattern[str]]) -> bool:
    """cilium-cli's rule: any positive filter must match (if there is one) and no negative filter may."""
    if run and not any(r.search(name) for r in run):
        return False
    return not any(r.search(name) for r in leave)
