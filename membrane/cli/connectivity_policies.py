"""The policies of ``membrane connectivity test``: real CiliumNetworkPolicy / NetworkPolicy YAML, as
cilium-cli's connectivity tests apply them, for the ``cilium-test-1`` deployment (labels ``kind: client``
/ ``kind: echo``, ``name: <deployment>``, ``other: client`` on client2, one service account each)."""

from __future__ import annotations

NAMESPACE = "cilium-test-1"
OTHER_CIDR = "203.0.113.12/32"  # the world's ipinfo.io: the one to-cidr-external allows
DENIED_CIDR = "203.0.113.11/32"  # the world's one.one.one.one
WORLD_PREFIX = "203.0.113.0/24"

_CNP = """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: {name}, namespace: cilium-test-1}}
spec:
{spec}"""
_KNP = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: {name}, namespace: cilium-test-1}}
spec:
{spec}"""
_DNS_EGRESS = """  - toEndpoints:
      - matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns}
    toPorts:
      - ports: [{port: "53", protocol: UDP}, {port: "53", protocol: TCP}]
"""
# DNS through the DNS proxy (every name), as cilium-cli's dns-only and to-fqdns policies have it
_DNS_PROXIED = _DNS_EGRESS + """        rules:
          dns: [{matchPattern: "*"}]
"""
WORLD_NAME = "one.one.one.one"
_ALLOW_ALL_EGRESS = "  egress:\n  - toEntities: [all]\n"
_ALLOW_ALL_INGRESS = "  ingress:\n  - fromEntities: [all]\n"


def cnp(name: str, spec: str) -> str:
    return _CNP.format(name=name, spec=spec)


def knp(name: str, spec: str) -> str:
    return _KNP.format(name=name, spec=spec)


CLIENT = "  endpointSelector: {matchLabels: {kind: client}}\n"
ECHO = "  endpointSelector: {matchLabels: {kind: echo}}\n"
ALL = "  endpointSelector: {}\n"

CLIENT2 = "  endpointSelector: {matchLabels: {other: client}}\n"
OTHER_WORLD_NAME = "ipinfo.io"
# the header value client-egress-l7-set-header's policy puts in (cilium-cli: Secret header-match, data.value)
SECRET = """apiVersion: v1
kind: Secret
metadata: {name: header-match, namespace: cilium-test-1}
stringData: {value: Bearer 123456}
"""


def _echo_ingress_l7(port: str) -> str:
    """Only client2 may GET /, /public and /private (the latter with X-Very-Secret-Token: 42) on echo."""
    return f"""  ingress:
  - fromEndpoints: [{{matchLabels: {{other: client}}, matchExpressions: [{{key: io.cilium.k8s.policy.cluster, operator: Exists}}]}}]
    toPorts:
    - ports: [{{port: "{port}", protocol: TCP}}]
      rules:
        http:
        - {{method: GET, path: /$}}
        - {{method: GET, path: /public$}}
        - {{method: GET, path: /private$, headers: ["X-Very-Secret-Token: 42"]}}
"""


def _client_egress_l7(port: str) -> str:
    """client2 may GET / on echo (``port``) and on one.one.one.one:80 (toFQDNs), nothing else."""
    return f"""  egress:
  - toEndpoints: [{{matchLabels: {{kind: echo}}}}]
    toPorts:
    - ports: [{{port: "{port}", protocol: TCP}}]
      rules:
        http: [{{method: GET, path: /}}]
  - toFQDNs: [{{matchName: {WORLD_NAME}}}]
    toPorts:
    - ports: [{{port: "80", protocol: TCP}}]
      rules:
        http: [{{method: GET, path: /}}]
"""


def _tls_sni(name: str) -> str:
    return CLIENT + f"""  egress:
  - toPorts:
    - ports: [{{port: "443", protocol: TCP}}]
      serverNames: [{name}]
"""


POLICIES: dict[str, list[str]] = {
    "allow-all-except-world": [cnp("allow-all-except-world", ALL + """  ingress:
  - fromEntities: [cluster]
  egress:
  - toEntities: [cluster]
""")],
    "client-ingress": [cnp("client-ingress-from-client2", CLIENT + """  ingress:
  - fromEndpoints: [{matchLabels: {other: client}}]
""")],
    "client-ingress-knp": [knp("client-ingress-from-client2", """  podSelector: {matchLabels: {kind: client}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {other: client}}}]
""")],
    "all-ingress-deny": [cnp("all-ingress-deny", ALL + "  ingress:\n  - {}\n")],
    "all-ingress-deny-knp": [knp("all-ingress-deny", "  podSelector: {}\n  policyTypes: [Ingress]\n")],
    "all-egress-deny": [cnp("all-egress-deny", ALL + "  egress:\n  - {}\n")],
    "all-egress-deny-knp": [knp("all-egress-deny", "  podSelector: {}\n  policyTypes: [Egress]\n")],
    "all-entities-deny": [cnp("all-entities-deny", ALL + "  egressDeny:\n  - toEntities: [all]\n")],
    "cluster-entity": [cnp("client-egress-to-cluster", CLIENT + "  egress:\n  - toEntities: [cluster]\n")],
    "host-entity-egress": [cnp("client-egress-to-host", CLIENT + "  egress:\n  - toEntities: [host]\n")],
    "echo-ingress": [cnp("echo-ingress-from-client", ECHO + """  ingress:
  - fromEndpoints: [{matchLabels: {kind: client}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
""")],
    "echo-ingress-knp": [knp("echo-ingress-from-client", """  podSelector: {matchLabels: {kind: echo}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {kind: client}}}]
    ports: [{port: 8080, protocol: TCP}]
""")],
    "client-ingress-icmp": [cnp("client-ingress-icmp", CLIENT + """  ingress:
  - fromEndpoints: [{matchLabels: {kind: client}}]
    icmps: [{fields: [{type: 8, family: IPv4}]}]
""")],
    "client-egress": [cnp("client-egress-to-echo", CLIENT + """  egress:
  - toEndpoints: [{matchLabels: {kind: echo}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
""" + _DNS_EGRESS)],
    "client-egress-knp": [knp("client-egress-to-echo", """  podSelector: {matchLabels: {kind: client}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {kind: echo}}}]
    ports: [{port: 8080, protocol: TCP}]
""")],
    "client-egress-expression": [cnp("client-egress-to-echo-expression", CLIENT + """  egress:
  - toEndpoints: [{matchExpressions: [{key: kind, operator: In, values: [echo]}]}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
""")],
    "client-egress-expression-knp": [knp("client-egress-to-echo-expression", """  podSelector: {matchLabels: {kind: client}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchExpressions: [{key: kind, operator: In, values: [echo]}]}}]
    ports: [{port: 8080, protocol: TCP}]
""")],
    "client-with-service-account-egress-to-echo": [cnp("client-sa-egress-to-echo", """  endpointSelector:
    matchLabels: {io.cilium.k8s.policy.serviceaccount: client}
  egress:
  - toEndpoints: [{matchLabels: {kind: echo}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
""")],
    "client-egress-to-echo-service-account": [cnp("client-egress-to-echo-sa", CLIENT + """  egress:
  - toEndpoints: [{matchLabels: {io.cilium.k8s.policy.serviceaccount: echo-same-node}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
""")],
    "to-entities-world": [cnp("client-egress-to-entities-world", CLIENT + """  egress:
  - toEntities: [world]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
""" + _DNS_EGRESS)],
    "to-cidr-external": [cnp("client-egress-to-cidr", CLIENT + f"""  egress:
  - toCIDRSet: [{{cidr: {WORLD_PREFIX}, except: [{DENIED_CIDR}]}}]
""")],
    "to-cidr-external-knp": [knp("client-egress-to-cidr", f"""  podSelector: {{matchLabels: {{kind: client}}}}
  policyTypes: [Egress]
  egress:
  - to: [{{ipBlock: {{cidr: {WORLD_PREFIX}, except: [{DENIED_CIDR}]}}}}]
""")],
    "echo-ingress-from-other-client-deny": [cnp("echo-ingress-from-other-client-deny", ECHO + _ALLOW_ALL_INGRESS + """  ingressDeny:
  - fromEndpoints: [{matchLabels: {other: client}}]
""")],
    "client-ingress-from-other-client-icmp-deny": [cnp("client-ingress-from-other-client-icmp-deny", CLIENT
                                                       + _ALLOW_ALL_INGRESS + """  ingressDeny:
  - fromEndpoints: [{matchLabels: {other: client}}]
    icmps: [{fields: [{type: 8, family: IPv4}]}]
""")],
    "client-egress-to-echo-deny": [cnp("client-egress-to-echo-deny", CLIENT + _ALLOW_ALL_EGRESS + """  egressDeny:
  - toEndpoints: [{matchLabels: {name: echo-same-node}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
""")],
    "client-ingress-to-echo-named-port-deny": [cnp("client-ingress-to-echo-named-port-deny", ECHO
                                                   + _ALLOW_ALL_INGRESS + """  ingressDeny:
  - fromEndpoints: [{matchLabels: {kind: client}}]
    toPorts: [{ports: [{port: http-8080}]}]
""")],
    "client-egress-to-echo-expression-deny": [cnp("client-egress-to-echo-expression-deny", CLIENT
                                                  + _ALLOW_ALL_EGRESS + """  egressDeny:
  - toEndpoints: [{matchExpressions: [{key: name, operator: In, values: [echo-same-node]}]}]
""")],
    "client-with-service-account-egress-to-echo-deny": [cnp("client-sa-egress-to-echo-deny", """  endpointSelector:
    matchLabels: {io.cilium.k8s.policy.serviceaccount: client}
""" + _ALLOW_ALL_EGRESS + """  egressDeny:
  - toEndpoints: [{matchLabels: {kind: echo}}]
""")],
    "client-egress-to-echo-service-account-deny": [cnp("client-egress-to-echo-sa-deny", CLIENT
                                                       + _ALLOW_ALL_EGRESS + """  egressDeny:
  - toEndpoints: [{matchLabels: {io.cilium.k8s.policy.serviceaccount: echo-same-node}}]
""")],
    "client-egress-to-cidr-deny": [cnp("client-egress-to-cidr-deny", CLIENT + _ALLOW_ALL_EGRESS + f"""  egressDeny:
  - toCIDR: [{DENIED_CIDR}]
""")],
    "dns-only": [cnp("client-egress-only-dns", CLIENT + "  egress:\n" + _DNS_PROXIED)],
    "to-fqdns": [cnp("client-egress-to-fqdns", CLIENT + "  egress:\n" + _DNS_PROXIED + f"""  - toFQDNs: [{{matchName: {WORLD_NAME}}}]
    toPorts: [{{ports: [{{port: "80", protocol: TCP}}]}}]
""")],    # L7 (cilium-cli's echo-ingress-l7*, client-egress-l7*, client-egress-tls-sni manifests)
    "echo-ingress-l7": [cnp("echo-ingress-l7-http", ECHO + _echo_ingress_l7("8080"))],
    "echo-ingress-l7-named-port": [cnp("echo-ingress-l7-http-named-port", ECHO + _echo_ingress_l7("http-8080"))],
    "client-egress-l7": [cnp("client-egress-only-dns", CLIENT + "  egress:\n" + _DNS_PROXIED),
                         cnp("client-egress-l7-http", CLIENT2 + _client_egress_l7("8080"))],
    "client-egress-l7-named-port": [cnp("client-egress-only-dns", CLIENT + "  egress:\n" + _DNS_PROXIED),
                                    cnp("client-egress-l7-http-named-port", CLIENT2 + _client_egress_l7("http-8080"))],
    "client-egress-l7-method": [cnp("client-egress-only-dns", CLIENT + "  egress:\n" + _DNS_PROXIED),
                                cnp("client-egress-l7-http-method", CLIENT2 + """  egress:
  - toEndpoints: [{matchLabels: {kind: echo}, matchExpressions: [{key: io.cilium.k8s.policy.cluster, operator: Exists}]}]
    toPorts:
    - ports: [{port: "8080", protocol: TCP}]
      rules:
        http: [{method: POST, path: /public$}, {method: POST, path: /private$}]
""")],
    "client-egress-l7-set-header": [SECRET, cnp("client-egress-l7-http-matchheader-secret", CLIENT2 + """  egress:
  - toEndpoints: [{matchLabels: {kind: echo}}]
    toPorts:
    - ports: [{port: "8080", protocol: TCP}]
      rules:
        http:
        - method: POST
          path: /auth-header-required$
          headerMatches:
          - {name: Authorization, mismatch: REPLACE, secret: {namespace: cilium-test-1, name: header-match}}
""")],
    "client-egress-tls-sni": [cnp("client-egress-tls-sni", _tls_sni(WORLD_NAME)),
                              cnp("client-egress-only-dns", CLIENT + "  egress:\n" + _DNS_PROXIED)],
    "client-egress-tls-sni-denied": [cnp("client-egress-tls-sni-other", _tls_sni(OTHER_WORLD_NAME)),
                                     cnp("client-egress-only-dns", CLIENT + "  egress:\n" + _DNS_PROXIED)],
}
