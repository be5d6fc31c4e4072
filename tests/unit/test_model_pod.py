"""Pods: PodSpec/Container validation, defaults, and the kubelet's accessors."""

from __future__ import annotations

import copy

import pytest

from membrane.model.errors import ValidationError
from membrane.model.pod import (
    ContainerPort,
    container_ports,
    named_port,
    pod_containers,
    pod_host_network,
    pod_is_ready,
    pod_is_terminating,
    pod_key,
    pod_labels,
    pod_node_name,
    pod_service_account,
)
from membrane.model.validate import validate_object


def pod(*containers, **spec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {"containers": list(containers) or [{"name": "c", "image": "nginx"}], **spec},
    }


def valid(obj) -> dict:
    return validate_object(obj, "pod.yaml:doc 1")


def error(obj) -> str:
    before = copy.deepcopy(obj)
    with pytest.raises(ValidationError) as exc:
        validate_object(obj, "pod.yaml:doc 1")
    assert obj == before
    return str(exc.value).removeprefix("pod.yaml:doc 1: ")


def test_defaults():
    spec = valid(pod({"name": "c", "image": "i", "ports": [{"containerPort": 80}]}))["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


def test_explicit_values_are_kept():
    spec = valid(pod(restartPolicy="Never", dnsPolicy="Default", terminationGracePeriodSeconds=0))["spec"]
    assert (spec["restartPolicy"], spec["dnsPolicy"], spec["terminationGracePeriodSeconds"]) == ("Never", "Default", 0)


def test_containers_required():
    obj = pod()
    del obj["spec"]
    assert error(obj) == "spec.containers: Required value"
    assert error(pod(containers=[])) == "spec.containers: Required value"


def test_container_errors():
    assert error(pod({"name": "c"})) == "spec.containers[0].image: Required value"
    assert error(pod({"name": "c", "image": ""})) == "spec.containers[0].image: Required value"
    assert error(pod({"image": "i"})) == "spec.containers[0].name: Required value"
    assert error(pod({"name": "C", "image": "i"})).startswith(
        'spec.containers[0].name: Invalid value: "C": a lowercase RFC 1123 label'
    )
    assert error(pod({"name": "c", "image": "i", "imagee": "x"})) == (
        'spec.containers[0]: unknown field "spec.containers[0].imagee"'
    )
    assert error(pod({"name": "c", "image": "i"}, {"name": "c", "image": "j"})) == (
        'spec.containers[1].name: Duplicate value: "c"'
    )
    assert error(pod({"name": "c", "image": "i", "command": "sleep 1"})) == (
        'spec.containers[0].command: Invalid value: "sleep 1": must be a list, not string'
    )
    assert error(pod({"name": "c", "image": "i", "args": ["a", 1]})) == (
        "spec.containers[0].args[1]: Invalid value: 1: must be a string, not integer (quote it in YAML)"
    )
    assert error(pod({"name": "c", "image": "i", "imagePullPolicy": "Sometimes"})) == (
        'spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: '
        '"Always", "IfNotPresent", "Never"'
    )
    assert error(pod({"name": "c", "image": "i", "tty": "yes"})) == (
        'spec.containers[0].tty: Invalid value: "yes": must be a boolean, not string'
    )
    assert error(pod({"name": "c", "image": "i", "env": [{"value": "x"}]})) == "spec.containers[0].env[0].name: Required value"
    assert error(pod({"name": "c", "image": "i", "env": [{"name": "A", "vale": "x"}]})) == (
        'spec.containers[0].env[0]: unknown field "spec.containers[0].env[0].vale"'
    )
    assert error(pod({"name": "c", "image": "i", "resources": []})) == (
        "spec.containers[0].resources: Invalid value: []: must be an object, not list"
    )


def test_init_container_names_share_the_namespace_with_containers():
    obj = pod(initContainers=[{"name": "c", "image": "busybox"}])
    assert error(obj) == 'spec.containers[0].name: Duplicate value: "c"'
    assert error(pod(initContainers=[{"name": "i", "image": "busybox", "restartPolicy": "Never"}])) == (
        'spec.initContainers[0].restartPolicy: Unsupported value: "Never": supported values: "Always"'
    )


def test_container_port_errors():
    def port_error(port: dict) -> str:
        return error(pod({"name": "c", "image": "i", "ports": [port]}))

    assert port_error({}) == "spec.containers[0].ports[0].containerPort: Required value"
    assert port_error({"containerPort": 0}) == (
        "spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive"
    )
    assert port_error({"containerPort": 65536}).endswith("Invalid value: 65536: must be between 1 and 65535, inclusive")
    assert port_error({"containerPort": "80"}) == (
        'spec.containers[0].ports[0].containerPort: Invalid value: "80": must be an integer, not string'
    )
    assert port_error({"containerPort": 80, "protocol": "ICMP"}) == (
        'spec.containers[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"'
    )
    assert port_error({"containerPort": 80, "protocol": "tcp"}).startswith(
        'spec.containers[0].ports[0].protocol: Unsupported value: "tcp"'
    )
    assert port_error({"containerPort": 80, "name": "a-very-long-port-name"}) == (
        'spec.containers[0].ports[0].name: Invalid value: "a-very-long-port-name": must be no more than 15 characters'
    )
    assert port_error({"containerPort": 80, "name": "HTTP"}).startswith(
        'spec.containers[0].ports[0].name: Invalid value: "HTTP": must contain only alpha-numeric'
    )
    assert port_error({"containerPort": 80, "hostPort": 70000}).startswith(
        "spec.containers[0].ports[0].hostPort: Invalid value: 70000"
    )
    assert port_error({"containerPort": 80, "hostIP": "1.2.3"}).startswith(
        'spec.containers[0].ports[0].hostIP: Invalid value: "1.2.3": must be a valid IP address'
    )
    assert port_error({"containerPort": 80, "targetPort": 80}) == (
        'spec.containers[0].ports[0]: unknown field "spec.containers[0].ports[0].targetPort"'
    )


def test_port_names_are_unique_within_the_pod():
    a = {"name": "a", "image": "i", "ports": [{"containerPort": 80, "name": "http"}]}
    b = {"name": "b", "image": "i", "ports": [{"containerPort": 81, "name": "http"}]}
    assert error(pod(a, b)) == 'spec.containers[1].ports[0].name: Duplicate value: "http"'
    b["ports"][0]["name"] = "metrics"
    assert valid(pod(a, b))


def test_all_real_podspec_fields_are_accepted():
    spec = {
        "nodeName": "node-1", "nodeSelector": {"disk": "ssd"}, "restartPolicy": "OnFailure",
        "terminationGracePeriodSeconds": 5, "serviceAccountName": "sa", "serviceAccount": "sa",
        "hostNetwork": False, "dnsPolicy": "ClusterFirstWithHostNet", "dnsConfig": {"nameservers": ["1.1.1.1"]},
        "affinity": {"nodeAffinity": {}}, "tolerations": [{"operator": "Exists"}],
        "securityContext": {"runAsUser": 1000}, "volumes": [{"name": "v", "emptyDir": {}}],
        "priorityClassName": "high", "hostname": "web", "subdomain": "svc", "schedulerName": "default-scheduler",
        "automountServiceAccountToken": False, "enableServiceLinks": False,
        "imagePullSecrets": [{"name": "s"}], "topologySpreadConstraints": [], "readinessGates": [],
        "runtimeClassName": "runc", "shareProcessNamespace": True, "hostAliases": [{"ip": "1.2.3.4"}],
        "activeDeadlineSeconds": 10, "hostPID": False, "hostIPC": False, "priority": 5, "os": {"name": "linux"},
        "overhead": {}, "preemptionPolicy": "Never", "setHostnameAsFQDN": False, "ephemeralContainers": [],
        "schedulingGates": [], "resourceClaims": [], "hostUsers": True,
    }
    container = {
        "name": "c", "image": "i", "command": ["sh"], "args": ["-c", "x"], "workingDir": "/",
        "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP", "hostPort": 53, "hostIP": "10.0.0.1"}],
        "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}],
        "envFrom": [], "resources": {"limits": {"cpu": "1"}}, "volumeMounts": [{"name": "v", "mountPath": "/v"}],
        "livenessProbe": {}, "readinessProbe": {}, "startupProbe": {}, "lifecycle": {},
        "imagePullPolicy": "IfNotPresent", "securityContext": {}, "stdin": True, "tty": True, "stdinOnce": False,
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
    }
    out = valid(pod(container, **spec))
    assert out["spec"]["nodeName"] == "node-1"


def test_podspec_field_errors():
    assert error(pod(restartPolicy="Sometimes")).startswith('spec.restartPolicy: Unsupported value: "Sometimes"')
    assert error(pod(dnsPolicy="Custom")).startswith('spec.dnsPolicy: Unsupported value: "Custom"')
    assert error(pod(nodeName="Node_1")).startswith('spec.nodeName: Invalid value: "Node_1"')
    assert error(pod(nodeSelector={"disk": "s s"})).startswith('spec.nodeSelector.disk: Invalid value: "s s"')
    assert error(pod(hostNetwork="true")) == 'spec.hostNetwork: Invalid value: "true": must be a boolean, not string'
    assert error(pod(terminationGracePeriodSeconds=-1)) == (
        "spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0"
    )
    assert error(pod(tolerations={})) == "spec.tolerations: Invalid value: {}: must be a list, not object"
    assert error(pod(nodeNmae="x")) == 'spec: unknown field "spec.nodeNmae"'


def test_host_network_host_port_must_match():
    c = {"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}]}
    assert error(pod(c, hostNetwork=True)) == (
        "spec.containers[0].ports[0].hostPort: Invalid value: 8080: must match `containerPort` when "
        "`hostNetwork` is true"
    )


def test_null_fields_are_treated_as_absent():
    out = valid(pod({"name": "c", "image": "i", "ports": None}, nodeName=None))
    assert "nodeName" not in out["spec"]
    assert "ports" not in out["spec"]["containers"][0]


RUNNING = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"},
                 "deletionTimestamp": "2024-01-01T00:00:00Z"},
    "spec": {
        "nodeName": "node-2",
        "hostNetwork": True,
        "serviceAccount": "legacy",
        "containers": [
            {"name": "app", "image": "i", "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"},
                                                     {"containerPort": 53, "name": "dns", "protocol": "UDP"}]},
            {"name": "sidecar", "image": "j", "ports": [{"containerPort": 9090}]},
        ],
    },
    "status": {"conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]},
}


def test_accessors():
    assert pod_key(RUNNING) == "shop/web-1"
    assert [c["name"] for c in pod_containers(RUNNING)] == ["app", "sidecar"]
    assert container_ports(RUNNING) == [
        ContainerPort("app", "http", 8080, "TCP"),
        ContainerPort("app", "dns", 53, "UDP"),
        ContainerPort("sidecar", "", 9090, "TCP"),
    ]
    container, name, port, protocol = container_ports(RUNNING)[1]
    assert (container, name, port, protocol) == ("app", "dns", 53, "UDP")
    assert named_port(RUNNING, "http") == 8080
    assert named_port(RUNNING, "dns", "TCP") is None
    assert named_port(RUNNING, "nope") is None
    assert pod_labels(RUNNING) == {"app": "web"}
    assert pod_service_account(RUNNING) == "legacy"
    assert pod_node_name(RUNNING) == "node-2"
    assert pod_host_network(RUNNING)
    assert pod_is_terminating(RUNNING)
    assert pod_is_ready(RUNNING)


def test_accessor_defaults_on_a_fresh_pod():
    fresh = valid(pod())
    assert pod_service_account(fresh) == "default"
    assert pod_node_name(fresh) == ""
    assert not pod_host_network(fresh)
    assert not pod_is_ready(fresh)
    assert not pod_is_terminating(fresh)
    assert container_ports(fresh) == []
    not_ready = {**fresh, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    assert not pod_is_ready(not_ready)
