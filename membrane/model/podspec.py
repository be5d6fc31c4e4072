"""PodSpec and Container validation, shared by Pods and the pod templates of Deployments.

Every field of the real Kubernetes PodSpec/Container is accepted; the ones Membrane acts on
(containers, ports, env, command, nodeName, hostNetwork, …) are checked in depth, the others only
for their outer type.
"""

from __future__ import annotations

from typing import Any

from membrane.model import names
from membrane.model.fields import Fields, check_ip, duplicate, invalid
from membrane.model.labels import check_labels

POD_SPEC_FIELDS = (
    "activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "containers", "dnsConfig", "dnsPolicy",
    "enableServiceLinks", "ephemeralContainers", "hostAliases", "hostIPC", "hostNetwork", "hostPID", "hostUsers",
    "hostname", "hostnameOverride", "imagePullSecrets", "initContainers", "nodeName", "nodeSelector", "os",
    "overhead", "preemptionPolicy", "priority", "priorityClassName", "readinessGates", "resourceClaims",
    "resources", "restartPolicy", "runtimeClassName", "schedulerName", "schedulingGates", "securityContext",
    "serviceAccount", "serviceAccountName", "setHostnameAsFQDN", "shareProcessNamespace", "subdomain",
    "terminationGracePeriodSeconds", "tolerations", "topologySpreadConstraints", "volumes",
)
CONTAINER_FIELDS = (
    "name", "image", "command", "args", "workingDir", "ports", "envFrom", "env", "resources", "resizePolicy",
    "restartPolicy", "restartPolicyRules", "volumeMounts", "volumeDevices", "livenessProbe", "readinessProbe",
    "startupProbe", "lifecycle", "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy",
    "securityContext", "stdin", "stdinOnce", "tty",
)
CONTAINER_PORT_FIELDS = ("containerPort", "name", "protocol", "hostPort", "hostIP")
ENV_VAR_FIELDS = ("name", "value", "valueFrom")

PROTOCOLS = ("TCP", "UDP", "SCTP")
RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
DEFAULT_TERMINATION_GRACE_SECONDS = 30


def _check_port(f: Fields, port_names: dict[str, str]) -> None:
    f.integer("containerPort", required=True, lo=1, hi=65535)
    name = f.string("name", check=names.iana_svc_name_error)
    if name:
        if name in port_names:
            raise duplicate(f.at("name"), name)
        port_names[name] = f.at("name")
    f.choice("protocol", PROTOCOLS, default="TCP")
    f.integer("hostPort", lo=0, hi=65535)  # 0 means "no host port"
    host_ip = f.string("hostIP")
    if host_ip:
        check_ip(host_ip, f.at("hostIP"))


def check_container(data: Any, path: str, *, port_names: dict[str, str], init: bool = False) -> dict[str, Any]:
    """One container; ``port_names`` collects port names across the pod (they must be unique)."""
    f = Fields(data, path, CONTAINER_FIELDS)
    f.string("name", required=True, check=names.dns1123_label_error)
    f.string("image", required=True)
    f.strings("command")
    f.strings("args")
    f.string("workingDir")
    for ppath, port in f.each("ports"):
        _check_port(Fields(port, ppath, CONTAINER_PORT_FIELDS), port_names)
    for epath, env in f.each("env"):
        e = Fields(env, epath, ENV_VAR_FIELDS)
        e.string("name", required=True)
        e.string("value")
        e.opaque("valueFrom", kind=dict)
    f.choice("imagePullPolicy", PULL_POLICIES)
    if init:
        f.choice("restartPolicy", ("Always",))
    elif f.has("restartPolicy"):
        f.choice("restartPolicy", RESTART_POLICIES)
    f.choice("terminationMessagePolicy", ("File", "FallbackToLogsOnError"))
    f.string("terminationMessagePath")
    for flag in ("stdin", "stdinOnce", "tty"):
        f.boolean(flag)
    f.opaque("resources", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle", "securityContext",
             kind=dict)
    f.opaque("envFrom", "volumeMounts", "volumeDevices", "resizePolicy", "restartPolicyRules", kind=list)
    return f.data


def check_pod_spec(data: Any, path: str, *, template: bool = False) -> dict[str, Any]:
    """Validate a PodSpec in place and fill Kubernetes' defaults (restartPolicy, dnsPolicy, grace period).

    ``template``: the spec of a Deployment's pod template, where only ``restartPolicy: Always`` is valid.
    """
    f = Fields(data, path, POD_SPEC_FIELDS)
    port_names: dict[str, str] = {}
    container_names: set[str] = set()
    groups = (("initContainers", False, True), ("containers", True, False))
    for key, required, init in groups:
        for cpath, container in f.each(key, required=required, non_empty=required):
            c = check_container(container, cpath, port_names=port_names, init=init)
            if c["name"] in container_names:
                raise duplicate(f"{cpath}.name", c["name"])
            container_names.add(c["name"])
    f.choice("restartPolicy", ("Always",) if template else RESTART_POLICIES, default="Always")
    f.choice("dnsPolicy", DNS_POLICIES, default="ClusterFirst")
    f.integer("terminationGracePeriodSeconds", lo=0, default=DEFAULT_TERMINATION_GRACE_SECONDS, int64=True)
    f.integer("activeDeadlineSeconds", lo=1, int64=True)
    f.string("nodeName", check=names.dns1123_subdomain_error)
    if f.has("nodeSelector"):
        check_labels(f.raw("nodeSelector"), f.at("nodeSelector"))
    for key in ("serviceAccountName", "serviceAccount"):
        f.string(key, check=names.dns1123_subdomain_error)
    for key in ("hostname", "subdomain"):
        f.string(key, check=names.dns1123_label_error)
    for key in ("hostNetwork", "hostPID", "hostIPC", "hostUsers", "shareProcessNamespace",
                "automountServiceAccountToken", "enableServiceLinks", "setHostnameAsFQDN"):
        f.boolean(key)
    for key in ("priorityClassName", "schedulerName", "runtimeClassName", "preemptionPolicy", "hostnameOverride"):
        f.string(key)
    f.integer("priority")
    f.opaque("affinity", "dnsConfig", "securityContext", "os", "overhead", "resources", kind=dict)
    f.opaque("tolerations", "volumes", "imagePullSecrets", "topologySpreadConstraints", "readinessGates",
             "hostAliases", "resourceClaims", "schedulingGates", "ephemeralContainers", kind=list)
    if f.raw("hostNetwork"):
        _check_host_network_ports(f)
    return f.data


def _check_host_network_ports(f: Fields) -> None:
    """With hostNetwork, a container port that sets hostPort must use the same number."""
    for i, container in enumerate(f.data.get("containers", [])):
        for j, port in enumerate(container.get("ports") or []):
            host = port.get("hostPort")
            if host and host != port["containerPort"]:
                path = f"{f.at('containers')}[{i}].ports[{j}].hostPort"
                raise invalid(path, host, "must match `containerPort` when `hostNetwork` is true")

