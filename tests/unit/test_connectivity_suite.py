"""``membrane connectivity test`` without a lab: test names, filters, expectations, policies, reports."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
import yaml

from membrane.cli.connectivity_deploy import manifest, placement
from membrane.cli.connectivity_policies import POLICIES
from membrane.cli.connectivity_report import ActionResult, junit_xml, summary
from membrane.cli.connectivity_report import TestResult as Result
from membrane.cli.connectivity_suite import TESTS, PodRef, Topology, compile_filters, selected
from membrane.model.validate import validate_object

TOPO = Topology(
    pods={"client": PodRef("client-1", "10.0.1.5", "k8s-w1"), "client2": PodRef("client2-1", "10.0.1.4", "k8s-w1"),
          "echo-same-node": PodRef("echo-same-node-1", "10.0.1.6", "k8s-w1"),
          "echo-other-node": PodRef("echo-other-node-1", "10.0.2.2", "k8s-w2")},
    nodes={"k8s-ctr": "192.168.10.100", "k8s-w1": "192.168.10.101", "k8s-w2": "192.168.10.102"},
    services={"echo-same-node": ("10.96.1.2", 31000), "echo-other-node": ("10.96.1.3", 31001)},
)
BY_NAME = {t.name: t for t in TESTS}


def test_cilium_names_and_enough_runnable_tests() -> None:
    for name in ("no-policies", "no-policies-extra", "allow-all-except-world", "client-ingress", "client-egress",
                 "to-entities-world", "to-cidr-external", "echo-ingress-from-other-client-deny",
                 "client-egress-to-echo-service-account", "pod-to-service", "pod-to-hostport", "node-to-node",
                 "dns-only", "to-fqdns", "echo-ingress-l7"):
        assert name in BY_NAME
    assert len(BY_NAME) == len(TESTS)
    assert sum(1 for t in TESTS if not t.missing) >= 30
    assert BY_NAME["local-redirect-policy"].missing == "local redirect policy"
    assert not BY_NAME["to-fqdns"].missing and "toFQDNs" in POLICIES["to-fqdns"][0]
    assert "TLS interception" in BY_NAME["client-egress-l7-tls-headers"].missing
    for name in ("echo-ingress-l7", "echo-ingress-l7-named-port", "client-egress-l7", "client-egress-l7-named-port",
                 "client-egress-l7-method",
                 "client-egress-l7-set-header", "client-egress-tls-sni", "client-egress-tls-sni-denied"):
        assert not BY_NAME[name].missing and POLICIES[name], name


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policies_are_valid_manifests_of_a_runnable_test(name: str) -> None:
    assert name in BY_NAME and not BY_NAME[name].missing
    for text in POLICIES[name]:
        for doc in yaml.safe_load_all(text):
            obj = validate_object(doc, name)
            assert obj["metadata"]["namespace"] == "cilium-test-1"


def test_deployment_manifest_is_valid_and_placed() -> None:
    same, other = placement(["k8s-w2", "k8s-ctr", "k8s-w1"])
    assert (same, other) == ("k8s-w1", "k8s-w2")
    assert placement(["a", "b"]) == ("b", "a")
    with pytest.raises(ValueError, match="at least 2 nodes"):
        placement(["a"])
    kinds = [validate_object(d, "x")["kind"] for d in yaml.safe_load_all(manifest(same, other))]
    assert kinds == ["Namespace"] + ["Deployment"] * 4 + ["Service"] * 2
    echoes = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
              for d in yaml.safe_load_all(manifest(same, other)) if d["kind"] == "Deployment"}
    assert echoes["echo-same-node"] == {"name": "echo-same-node", "kind": "echo", "other": "echo"}
    assert echoes["echo-other-node"] == {"name": "echo-other-node", "kind": "echo", "first": "echo"}


def test_expectations_follow_the_policy() -> None:
    actions = BY_NAME["client-egress-to-echo-deny"].actions(TOPO)
    assert {(a.src, a.dst, a.expect_ok) for a in actions} == {
        (s, d, d != "echo-same-node") for s in ("client", "client2") for d in ("echo-same-node", "echo-other-node")}
    ping = BY_NAME["client-ingress"].actions(TOPO)
    assert {(a.src, a.expect_ok) for a in ping if a.scenario == "client-to-client"} == {("client", False), ("client2", True)}
    assert all(a.expect_ok for a in BY_NAME["no-policies"].actions(TOPO))
    cidr = {a.dst: a.expect_ok for a in BY_NAME["to-cidr-external"].actions(TOPO) if a.scenario == "pod-to-cidr"}
    assert cidr == {"cidr-other": True, "cidr-denied": False}
    hosts = {a.dst_text.split()[0]: a.dst for a in BY_NAME["host-entity-egress"].actions(TOPO) if a.scenario == "pod-to-host"}
    assert hosts == {"k8s-ctr": "remote-node", "k8s-w1": "host", "k8s-w2": "remote-node"}


def _l7(name: str) -> set[tuple]:
    return {(a.src, a.dst, a.argv[-1].split(":8080")[-1] if ":8080" in a.argv[-1] else a.argv[-1], a.header,
             "-X" in a.argv and a.argv[a.argv.index("-X") + 1], a.expect_ok, a.fail_code)
            for a in BY_NAME[name].actions(TOPO)}


def test_echo_ingress_l7_expectations_as_cilium_cli() -> None:
    got = _l7("echo-ingress-l7")
    for echo in ("echo-same-node", "echo-other-node"):
        assert ("client2", echo, "/public", False, False, True, 0) in got
        assert ("client2", echo, "/private", False, False, False, 22) in got  # 403 from the proxy
        assert ("client2", echo, "/private", True, False, True, 0) in got  # with X-Very-Secret-Token: 42
        assert ("client", echo, "/private", True, False, False, 0) in got  # ingress default deny
    assert len(got) == 2 * 2 * 3
    assert "http-8080" in POLICIES["echo-ingress-l7-named-port"][0]


def test_client_egress_l7_method_and_set_header_expectations() -> None:
    got = _l7("client-egress-l7-method")
    assert ("client2", "echo-same-node", "/public", False, "POST", True, 0) in got
    assert ("client2", "echo-other-node", "/public", False, False, False, 22) in got  # GET: 403
    assert all(not ok for src, *_rest, ok, _code in got if src == "client")
    header = _l7("client-egress-l7-set-header")
    assert {(src, path, method, ok, code) for src, _d, path, _h, method, ok, code in header} == {
        ("client2", "/auth-header-required", "POST", True, 0), ("client", "/auth-header-required", "POST", False, 22)}
    assert any(yaml.safe_load(d)["kind"] == "Secret" for d in POLICIES["client-egress-l7-set-header"])


@pytest.mark.parametrize("name", ["client-egress-l7", "client-egress-l7-named-port"])
def test_client_egress_l7_expectations(name: str) -> None:
    got = {(a.src, a.scenario, a.argv[-1].split("//")[1].split(":")[0], a.port, a.expect_ok)
           for a in BY_NAME[name].actions(TOPO)}
    assert ("client2", "pod-to-pod", "10.0.1.6", 8080, True) in got
    assert ("client2", "pod-to-world", "one.one.one.one", 80, True) in got
    assert ("client2", "pod-to-world", "one.one.one.one", 443, False) in got  # no L7 rule on 443: egress default deny
    assert {ok for src, *_rest, ok in got if src == "client"} == {False}


def test_tls_sni_expectations() -> None:
    allowed = {(a.argv[-1], a.expect_ok, a.fail_code) for a in BY_NAME["client-egress-tls-sni"].actions(TOPO)}
    assert allowed == {("http://one.one.one.one", False, 0), ("https://one.one.one.one", True, 0),
                       ("https://one.one.one.one/index.html", True, 0)}
    denied = {(a.argv[-1], a.expect_ok, a.fail_code) for a in BY_NAME["client-egress-tls-sni-denied"].actions(TOPO)}
    assert ("https://one.one.one.one", False, 35) in denied and ("http://one.one.one.one", False, 0) in denied
    assert "serverNames: [ipinfo.io]" in POLICIES["client-egress-tls-sni-denied"][0]


def test_actions_run_where_they_should() -> None:
    places = {a.place for a in BY_NAME["no-policies"].actions(TOPO)}
    assert ("pod", "client-1") in places and ("node", "k8s-ctr") in places
    outside = BY_NAME["no-policies-from-outside"].actions(TOPO)
    assert {a.place for a in outside} == {("world", "")} and len(outside) == 3
    assert outside[0].argv[-1] == "http://192.168.10.100:31000/"


def test_filters_as_cilium_cli() -> None:
    run, leave = compile_filters(["client-egress", "!knp$"])
    assert selected("client-egress", run, leave)
    assert not selected("client-egress-knp", run, leave)
    assert not selected("no-policies", run, leave)
    run, leave = compile_filters(["!l7"])
    assert selected("no-policies", run, leave) and not selected("echo-ingress-l7", run, leave)
    with pytest.raises(re.error):
        compile_filters(["("])


def _results() -> list[Result]:
    ok = ActionResult("no-policies/pod-to-pod/curl-0", "a -> b", True, True, "success")
    bad = ActionResult("client-egress/pod-to-pod/curl-1", "a -> c", False, False, "got success")
    return [Result("no-policies", actions=[ok]), Result("client-egress", actions=[ok, bad]),
            Result("local-redirect-policy", skipped="needs local redirect policy")]


def test_summary_lines() -> None:
    results = _results()
    assert summary([results[0], results[2]])[-1] == (
        "✅ [cilium-test-1] All 1 tests (1 actions) successful, 1 tests skipped, 0 scenarios skipped.")
    lines = summary(results)
    assert lines[1] == "❌ [cilium-test-1] 1/2 tests failed (1/3 actions), 1 tests skipped, 0 scenarios skipped:"
    assert "client-egress/pod-to-pod/curl-1" in lines[-1]


def test_junit_xml() -> None:
    root = ET.fromstring(junit_xml(_results()))
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["local-redirect-policy"].find("skipped") is not None
    assert cases["client-egress"].find("failure") is not None
    assert cases["no-policies"].find("failure") is None


def test_flow_checks() -> None:
    from membrane.cli.connectivity_flows import check, since_text, validated

    delivered = {"verdict": "FORWARDED", "trace_observation_point": "TO_ENDPOINT"}
    left = {"verdict": "FORWARDED", "trace_observation_point": "FROM_ENDPOINT"}
    denied = {"verdict": "DROPPED", "drop_reason_desc": "POLICY_DENIED", "node_name": "k8s-w1"}
    other_drop = {"verdict": "DROPPED", "drop_reason_desc": "CT_MAP_INSERTION_FAILED"}
    assert check([left, delivered], expect_ok=True) is None
    assert check([left], expect_ok=True) == "no FORWARDED to-endpoint flow recorded"
    assert check([left, delivered, denied], expect_ok=True) == "policy drop recorded (POLICY_DENIED on k8s-w1)"
    assert check([left, denied], expect_ok=False) is None
    assert check([left, other_drop], expect_ok=False) == "no policy drop recorded (drops: CT_MAP_INSERTION_FAILED)"
    assert check([], expect_ok=False) == "no policy drop recorded"
    pod_to_pod = BY_NAME["no-policies"].actions(TOPO)
    assert {a.scenario for a in pod_to_pod if validated(a)} == {"pod-to-pod", "client-to-client"}
    assert since_text(0.5) == "1970-01-01T00:00:00.500000Z"
