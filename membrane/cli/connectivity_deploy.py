"""The deployment ``membrane connectivity test`` runs against: cilium-cli's shape in ``cilium-test-1``.

client and client2 (``kind: client``; client2 also ``other: client``) and echo-same-node (``other: echo``)
on one node, echo-other-node (``first: echo``) on another; each echo is cilium-cli's json-mock serving HTTP on 8080 (container port ``http-8080``, hostPort 4000)
behind a NodePort Service of its name; every Deployment runs under a service account of its name. The
host-netns client of cilium-cli is the node's own network namespace (``lab exec NODE``).
"""

from __future__ import annotations

import time
from typing import Any

import yaml

from membrane.cli.arguments import CLIError
from membrane.cli.connectivity_policies import NAMESPACE
from membrane.cli.connectivity_suite import ECHO_PORT, ECHOES, HOST_PORT, PodRef, Topology

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


# ---- deploying it and waiting until it is Ready --------------------------------------------------------
def _node_ips(store: Any) -> dict[str, str]:
    out = {}
    for node in store.list("core", "Node")[0]:
        addrs = node.get("status", {}).get("addresses") or []
        ip = next((a["address"] for a in addrs if a.get("type") == "InternalIP"), "")
        if ip:
            out[node["metadata"]["name"]] = ip
    return out


def deploy_test_pods(store: Any, lab: str, timeout: float) -> Topology:
    from membrane.model.validate import validate_object

    nodes = _node_ips(store)
    try:
        same, other = placement(list(nodes))
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    objs = [validate_object(doc, "connectivity deployment") for doc in yaml.safe_load_all(manifest(same, other))]
    existing = store.get("apps", "Deployment", NAMESPACE, "client")
    store.apply_many(objs)
    if existing is None:
        print(f"✨ [{NAMESPACE}] Deploying client, client2, echo-same-node, echo-other-node ...", flush=True)
    deadline = time.monotonic() + timeout
    while True:
        pods = _ready_pods(store)
        services = {}
        for name in ECHOES:
            svc = store.get("core", "Service", NAMESPACE, name) or {}
            spec = svc.get("spec", {})
            ports = spec.get("ports") or [{}]
            services[name] = (spec.get("clusterIP", ""), int(ports[0].get("nodePort") or 0))
        if len(pods) == 4 and all(ip and port for ip, port in services.values()):
            return Topology(pods, nodes, services)
        if time.monotonic() > deadline:
            raise CLIError(f"connectivity test pods not Ready after {timeout:.0f}s (ready: {sorted(pods)}); "
                           f"see: membrane get pods -n {NAMESPACE}")
        time.sleep(0.5)


def _ready_pods(store: Any) -> dict[str, PodRef]:
    out: dict[str, PodRef] = {}
    for pod in store.list("core", "Pod", NAMESPACE)[0]:
        status = pod.get("status", {})
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        role = (pod["metadata"].get("labels") or {}).get("name", "")
        if ready and status.get("podIP") and pod["metadata"].get("deletionTimestamp") is None:
            out[role] = PodRef(pod["metadata"]["name"], status["podIP"], pod["spec"].get("nodeName", ""))
    return out


def pause_pids(lab: str) -> dict[str, int]:
    """Pod name -> sandbox PID of the test pods (the lab's runtime: the checks run in its namespaces)."""
    from membrane.cli.lab_cmds import pod_sandbox_pids

    return {name: pid for (_ns, name), pid in pod_sandbox_pids(lab, NAMESPACE).items()}
