"""Services: types, ports, cluster IPs, affinity, traffic policies, defaults."""

from __future__ import annotations

import copy

import pytest

from membrane.model.errors import ValidationError
from membrane.model.validate import validate_object


def service(name="web", **spec) -> dict:
    base = {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    base.update(spec)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": base}


def valid(obj) -> dict:
    return validate_object(obj, "s.yaml:doc 1")["spec"]


def error(obj) -> str:
    before = copy.deepcopy(obj)
    with pytest.raises(ValidationError) as exc:
        validate_object(obj, "s.yaml:doc 1")
    assert obj == before
    return str(exc.value).removeprefix("s.yaml:doc 1: ")


def test_defaults():
    spec = valid(service())
    assert spec == {
        "selector": {"app": "web"},
        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
        "type": "ClusterIP",
        "sessionAffinity": "None",
        "internalTrafficPolicy": "Cluster",
    }


def test_empty_enum_values_mean_the_default():
    spec = valid(service(type="", ports=[{"port": 80, "protocol": ""}], sessionAffinity=""))
    assert (spec["type"], spec["ports"][0]["protocol"], spec["sessionAffinity"]) == ("ClusterIP", "TCP", "None")


def test_node_port_defaults_external_traffic_policy():
    spec = valid(service(type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    assert spec["externalTrafficPolicy"] == "Cluster"
    assert spec["ports"][0]["nodePort"] == 30080


def test_name_is_a_dns1035_label():
    assert error(service(name="1web")).startswith('metadata.name: Invalid value: "1web": a DNS-1035 label')
    assert error(service(name="web.x")).startswith('metadata.name: Invalid value: "web.x": a DNS-1035 label')


def test_type():
    assert error(service(type="Internal")) == (
        'spec.type: Unsupported value: "Internal": supported values: "ClusterIP", "ExternalName", '
        '"LoadBalancer", "NodePort"'
    )


def test_ports_required_unless_headless_or_external_name():
    assert error(service(ports=[])) == "spec.ports: Required value"
    obj = service()
    del obj["spec"]["ports"]
    assert error(obj) == "spec.ports: Required value"
    assert valid(service(ports=[], clusterIP="None"))["clusterIP"] == "None"


def test_port_errors():
    assert error(service(ports=[{"targetPort": 80}])) == "spec.ports[0].port: Required value"
    assert error(service(ports=[{"port": 0}])) == (
        "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
    )
    assert error(service(ports=[{"port": 80, "protocol": "ICMP"}])).startswith(
        'spec.ports[0].protocol: Unsupported value: "ICMP"'
    )
    assert error(service(ports=[{"port": 80, "name": "http"}, {"port": 81}])) == "spec.ports[1].name: Required value"
    assert error(service(ports=[{"port": 80, "name": "http"}, {"port": 81, "name": "http"}])) == (
        'spec.ports[1].name: Duplicate value: "http"'
    )
    assert error(service(ports=[{"port": 80, "name": "HTTP"}])).startswith(
        'spec.ports[0].name: Invalid value: "HTTP": a lowercase RFC 1123 label'
    )
    assert error(service(ports=[{"port": 80, "name": "a"}, {"port": 80, "name": "b"}])) == (
        'spec.ports[1]: Duplicate value: "80/TCP"'
    )
    assert valid(service(ports=[{"port": 53, "name": "a", "protocol": "UDP"}, {"port": 53, "name": "b"}]))
    assert error(service(ports=[{"port": 80, "nodeport": 1}])) == 'spec.ports[0]: unknown field "spec.ports[0].nodeport"'


def test_target_port():
    assert valid(service(ports=[{"port": 80, "targetPort": 8080}]))["ports"][0]["targetPort"] == 8080
    assert valid(service(ports=[{"port": 80, "targetPort": "http"}]))["ports"][0]["targetPort"] == "http"
    assert error(service(ports=[{"port": 80, "targetPort": 70000}])) == (
        "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive"
    )
    assert error(service(ports=[{"port": 80, "targetPort": "8080"}])) == (
        'spec.ports[0].targetPort: Invalid value: "8080": must contain at least one letter (a-z); use a number'
    )
    assert error(service(ports=[{"port": 80, "targetPort": "web_port"}])).startswith(
        'spec.ports[0].targetPort: Invalid value: "web_port": must contain only alpha-numeric'
    )


def test_node_port_rules():
    assert error(service(ports=[{"port": 80, "nodePort": 30080}])) == (
        "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"
    )
    assert error(service(type="NodePort", ports=[{"port": 80, "nodePort": 8080}])) == (
        "spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. "
        "The range of valid ports is 30000-32767"
    )
    assert error(service(type="NodePort", ports=[{"port": 80, "name": "a", "nodePort": 30001},
                                                 {"port": 81, "name": "b", "nodePort": 30001}])) == (
        "spec.ports[1].nodePort: Duplicate value: 30001"
    )
    assert valid(service(type="LoadBalancer", ports=[{"port": 80, "nodePort": 32767}]))


def test_cluster_ip():
    assert valid(service(clusterIP="10.96.0.10"))["clusterIP"] == "10.96.0.10"
    assert valid(service(clusterIP="None"))["clusterIP"] == "None"
    assert valid(service(clusterIP="10.96.0.10", clusterIPs=["10.96.0.10"]))
    assert error(service(clusterIP="10.96.0.300")).startswith(
        'spec.clusterIP: Invalid value: "10.96.0.300": must be a valid IP address'
    )
    assert error(service(clusterIP="10.96.0.10", clusterIPs=["10.96.0.11"])) == (
        'spec.clusterIPs: Invalid value: ["10.96.0.11"]: first value must match `clusterIP`'
    )
    assert error(service(type="NodePort", clusterIP="None")) == (
        "spec.clusterIP: Invalid value: \"None\": may not be set to 'None' for NodePort services"
    )


def test_external_name():
    spec = valid(service(type="ExternalName", externalName="db.example.com.", ports=[], selector=None))
    assert spec["externalName"] == "db.example.com."
    assert "internalTrafficPolicy" not in spec
    assert error(service(type="ExternalName")) == "spec.externalName: Required value"
    assert error(service(type="ExternalName", externalName="Bad_Name")).startswith(
        'spec.externalName: Invalid value: "Bad_Name"'
    )
    assert error(service(type="ExternalName", externalName="a.b", clusterIP="10.0.0.1")) == (
        "spec.clusterIP: Forbidden: must be empty for ExternalName services"
    )
    assert error(service(externalName="a.b")) == (
        "spec.externalName: Forbidden: may only be set when `type` is 'ExternalName'"
    )


def test_external_ips_and_load_balancer_fields():
    assert valid(service(externalIPs=["192.0.2.10"]))
    assert error(service(externalIPs=["nope"])).startswith('spec.externalIPs[0]: Invalid value: "nope"')
    assert valid(service(type="LoadBalancer", loadBalancerIP="192.0.2.1", loadBalancerSourceRanges=["10.0.0.0/8"],
                         loadBalancerClass="io.cilium/l2-announcer", allocateLoadBalancerNodePorts=False))
    assert error(service(loadBalancerIP="192.0.2.1")) == (
        "spec.loadBalancerIP: Forbidden: may only be used when `type` is 'LoadBalancer'"
    )
    assert error(service(type="LoadBalancer", loadBalancerIP="x")).startswith('spec.loadBalancerIP: Invalid value: "x"')
    assert error(service(type="LoadBalancer", loadBalancerSourceRanges=["10.0.0.0/33"])).startswith(
        'spec.loadBalancerSourceRanges[0]: Invalid value: "10.0.0.0/33": must be a valid CIDR value'
    )


def test_session_affinity():
    spec = valid(service(sessionAffinity="ClientIP"))
    assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    spec = valid(service(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}))
    assert spec["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] == 60
    assert error(service(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 0}})) == (
        "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be between 1 and 86400, inclusive"
    )
    assert error(service(sessionAffinity="ClientIP",
                         sessionAffinityConfig={"clientIP": {"timeoutSeconds": 86401}})).endswith("inclusive")
    assert error(service(sessionAffinityConfig={"clientIP": {"timeoutSeconds": 5}})) == (
        "spec.sessionAffinityConfig: Forbidden: must not be set when `sessionAffinity` is None"
    )
    assert error(service(sessionAffinity="Cookie")).startswith('spec.sessionAffinity: Unsupported value: "Cookie"')


def test_traffic_policies():
    assert valid(service(type="NodePort", externalTrafficPolicy="Local"))["externalTrafficPolicy"] == "Local"
    assert valid(service(externalIPs=["192.0.2.1"], externalTrafficPolicy="Local"))
    assert error(service(externalTrafficPolicy="Local")) == (
        'spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services'
    )
    assert error(service(type="NodePort", externalTrafficPolicy="Nearby")).startswith(
        'spec.externalTrafficPolicy: Unsupported value: "Nearby"'
    )
    assert valid(service(internalTrafficPolicy="Local"))["internalTrafficPolicy"] == "Local"
    assert error(service(internalTrafficPolicy="local")).startswith('spec.internalTrafficPolicy: Unsupported value')
    assert valid(service(type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=31000))
    assert error(service(healthCheckNodePort=31000)).startswith("spec.healthCheckNodePort: Forbidden:")


def test_other_fields():
    spec = valid(service(publishNotReadyAddresses=True, ipFamilies=["IPv4"], ipFamilyPolicy="SingleStack",
                         trafficDistribution="PreferClose"))
    assert spec["publishNotReadyAddresses"] is True
    assert error(service(publishNotReadyAddresses="yes")).startswith("spec.publishNotReadyAddresses: Invalid value")
    assert error(service(ipFamilies=["IPv5"])).startswith('spec.ipFamilies[0]: Unsupported value: "IPv5"')
    assert error(service(ipFamilies=["IPv4", "IPv4"])) == 'spec.ipFamilies[1]: Duplicate value: "IPv4"'
    assert error(service(selector={"app": "a b"})).startswith('spec.selector.app: Invalid value: "a b"')
    assert error(service(selecter={"app": "web"})) == 'spec: unknown field "spec.selecter"'
