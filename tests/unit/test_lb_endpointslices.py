"""EndpointSlices and v1 Endpoints built from a Service and its pods."""

from __future__ import annotations

from typing import Any

from membrane.loadbalancer.endpointslices import endpoint_slices, legacy_endpoints, pod_ports, selects


def svc(name: str = "web", ports: list[dict[str, Any]] | None = None, selector: dict[str, str] | None = None,
        **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "uid": "svc-uid"},
            "spec": {"selector": {"app": "web"} if selector is None else selector,
                     "ports": ports or [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}], **spec}}


def pod(name: str, ip: str, node: str = "k8s-w1", ready: bool = True, labels: dict[str, str] | None = None,
        ns: str = "default", ports: list[dict[str, Any]] | None = None, **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}",
                         "labels": {"app": "web"} if labels is None else labels, **meta},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": ports or []}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_selector_matching():
    s = svc()
    assert selects(s, pod("a", "10.0.1.2"))
    assert not selects(s, pod("b", "10.0.1.3", labels={"app": "db"}))
    assert not selects(s, pod("c", "10.0.1.4", ns="other"))
    assert not selects(svc(selector={}), pod("a", "10.0.1.2"))


def test_slice_shape_and_conditions():
    pods = [pod("b", "10.0.2.3", node="k8s-w2"), pod("a", "10.0.1.10"), pod("nr", "10.0.1.9", ready=False),
            pod("t", "10.0.1.11", deletionTimestamp="2024-01-01T00:00:00Z"), pod("x", "10.0.1.12", labels={})]
    (sl,) = endpoint_slices(svc(), pods)
    assert sl["apiVersion"] == "discovery.k8s.io/v1" and sl["kind"] == "EndpointSlice"
    assert sl["metadata"]["name"].startswith("web-") and sl["metadata"]["namespace"] == "default"
    assert sl["metadata"]["labels"] == {"kubernetes.io/service-name": "web",
                                        "endpointslice.kubernetes.io/managed-by": "membrane"}
    assert sl["metadata"]["ownerReferences"][0]["uid"] == "svc-uid"
    assert sl["addressType"] == "IPv4"
    assert sl["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    by_ip = {e["addresses"][0]: e for e in sl["endpoints"]}
    assert list(by_ip) == ["10.0.1.9", "10.0.1.10", "10.0.1.11", "10.0.2.3"]  # numeric order
    assert by_ip["10.0.2.3"]["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert by_ip["10.0.2.3"]["nodeName"] == "k8s-w2"
    assert by_ip["10.0.2.3"]["targetRef"] == {"kind": "Pod", "namespace": "default", "name": "b", "uid": "uid-b"}
    assert by_ip["10.0.1.9"]["conditions"] == {"ready": False, "serving": False, "terminating": False}
    assert by_ip["10.0.1.11"]["conditions"] == {"ready": False, "serving": True, "terminating": True}


def test_publish_not_ready_addresses_marks_all_ready():
    (sl,) = endpoint_slices(svc(publishNotReadyAddresses=True), [pod("nr", "10.0.1.9", ready=False)])
    assert sl["endpoints"][0]["conditions"]["ready"] is True


def test_named_target_port_resolved_per_pod_and_grouped():
    s = svc(ports=[{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web"}])
    pods = [pod("a", "10.0.1.2", ports=[{"name": "web", "containerPort": 8080}]),
            pod("b", "10.0.1.3", ports=[{"name": "web", "containerPort": 9090}]),
            pod("c", "10.0.1.4", ports=[{"name": "web", "containerPort": 8080}]),
            pod("d", "10.0.1.5", ports=[{"name": "web", "containerPort": 53, "protocol": "UDP"}])]
    assert pod_ports(s, pods[0]) == (("http", 8080, "TCP"),)
    assert pod_ports(s, pods[3]) == ()
    slices = endpoint_slices(s, pods)
    layout = {tuple(p["port"] for p in sl["ports"]): [e["addresses"][0] for e in sl["endpoints"]] for sl in slices}
    assert layout == {(): ["10.0.1.5"], (8080,): ["10.0.1.2", "10.0.1.4"], (9090,): ["10.0.1.3"]}
    assert len({sl["metadata"]["name"] for sl in slices}) == 3
    assert endpoint_slices(s, list(reversed(pods))) == slices  # deterministic


def test_no_pods_gives_one_empty_slice_and_none_for_externalname_or_no_selector():
    (sl,) = endpoint_slices(svc(), [])
    assert sl["endpoints"] == [] and sl["ports"] == []
    assert endpoint_slices(svc(selector={}), [pod("a", "10.0.1.2")]) == []
    assert endpoint_slices(svc(type="ExternalName", externalName="x.example"), []) == []
    assert legacy_endpoints(svc(selector={}), []) is None


def test_pods_without_ip_or_finished_are_left_out():
    done = pod("done", "10.0.1.3")
    done["status"]["phase"] = "Succeeded"
    (sl,) = endpoint_slices(svc(), [pod("noip", ""), done])
    assert sl["endpoints"] == []


def test_slices_hold_at_most_100_endpoints():
    pods = [pod(f"p{i}", f"10.0.{i // 200}.{i % 200 + 1}") for i in range(250)]
    slices = endpoint_slices(svc(), pods)
    assert [len(s["endpoints"]) for s in slices] == [100, 100, 50]
    assert len({s["metadata"]["name"] for s in slices}) == 3


def test_legacy_endpoints():
    pods = [pod("a", "10.0.1.2"), pod("nr", "10.0.1.9", ready=False),
            pod("t", "10.0.1.11", deletionTimestamp="2024-01-01T00:00:00Z")]
    ep = legacy_endpoints(svc(), pods)
    assert ep is not None
    assert (ep["apiVersion"], ep["kind"], ep["metadata"]["name"]) == ("v1", "Endpoints", "web")
    assert ep["metadata"]["labels"]["kubernetes.io/service-name"] == "web"
    (subset,) = ep["subsets"]
    assert [a["ip"] for a in subset["addresses"]] == ["10.0.1.2"]
    assert subset["addresses"][0]["nodeName"] == "k8s-w1"
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.0.1.9"]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    unnamed = legacy_endpoints(svc(ports=[{"port": 80, "protocol": "TCP", "targetPort": 80}]), pods)
    assert unnamed is not None and unnamed["subsets"][0]["ports"] == [{"port": 80, "protocol": "TCP"}]
    assert legacy_endpoints(svc(), [])["subsets"] == []  # type: ignore[index]
