"""The deployment ``membrane connectivity test`` runs against: cilium-cli's shape in ``cilium-test-1``.

client and client2 (``kind: client``; client2 also ``other: client``) and echo-same-node (``other: echo``)
on one node, echo-other-node (``first: echo``) on another; each echo is cilium-cli's json-mock serving HTTP on 8080 (container port ``http-8080``, hostPort 4000)
behind a NodePort Service of its name; every Deployment runs under a service account of its name. The
host-netns client of cilium-cli is the node's own network namespace (``lab exec NODE``).
"""

from __future__ import annotations

from membrane.cli.connectivity_policies import NAMESPACE
from membrane.cli.connectivity_suite import ECHO_PORT, HOST_PORT

_DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: cilium-test-1, labels: {{name: {name}, kind: {kind}}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{name: {name}}}}}
  template:
    metadata: {{labels: {labels}}}
    spec:
      serviceAccountName: {name}
      nodeSelector: {{kubernetes.io/hostname: {node}}}
      containers:
{containers}"""
_CLIENT = """        - name: client
          image: curlimages/curl
          command: [sleep, infinity]
"""
_ECHO = f"""        - name: echo
          image: quay.io/cilium/json-mock
          env: [{{name: PORT, value: "{ECHO_PORT}"}}]
          ports: [{{name: http-{ECHO_PORT}, containerPort: {ECHO_PORT}, hostPort: {HOST_PORT}}}]
"""
_SERVICE = f"""apiVersion: v1
kind: Service
metadata: {{{{name: {{name}}, namespace: cilium-test-1, labels: {{{{kind: echo}}}}}}}}
spec:
  type: NodePort
  selector: {{{{name: {{name}}}}}}
  ports: [{{{{name: http, port: {ECHO_PORT}, targetPort: {ECHO_PORT}}}}}]
"""


def placement(nodes: list[str]) -> tuple[str, str]:
    """(node of client, client2 and echo-same-node; node of echo-other-node): workers first, as the
    control-plane node is the last a scheduler picks. Needs two nodes."""
    if len(nodes) < 2:
        raise ValueError(f"the connectivity test needs at least 2 nodes, the lab has {len(nodes)}")
    ordered = sorted(nodes)
    return ordered[1], ordered[2] if len(ordered) > 2 else ordered[0]


def manifest(same: str, other: str) -> str:
    """Namespace, the four Deployments and the two echo Services, as YAML."""
    docs = [f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n"]
    for name, kind, node, extra in (("client", "client", same, ""), ("client2", "client", same, ", other: client"),
                                    ("echo-same-node", "echo", same, ", other: echo"),
                                    ("echo-other-node", "echo", other, ", first: echo")):
        labels = f"{{name: {name}, kind: {kind}{extra}}}"
        docs.append(_DEPLOYMENT.format(name=name, kind=kind, labels=labels, node=node,
                                       containers=_CLIENT if kind == "client" else _ECHO))
    docs += [_SERVICE.format(name=name) for name in ("echo-same-node", "echo-other-node")]
    return "---\n".join(docs)
