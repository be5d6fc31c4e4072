"""kubectl's output formats and verbs (describe, logs, scale, wait) as far as they need no lab."""

from __future__ import annotations

import pytest

from membrane.cli.arguments import CLIError
from membrane.cli.describe_cmd import _title, describe
from membrane.cli.get_support import kinds, prefixed, ref, render_other
from membrane.cli.main import main
from membrane.cli.output_formats import check_output, custom_columns, jsonpath_output, sort_by
from membrane.cli.replicasets import REPLICASET, replicasets
from membrane.cli.workload_cmds import condition_met, parse_duration, parse_for
from membrane.model.deployment import pod_template_hash
from membrane.model.kinds import lookup_kind


def _pod(name: str, ip: str, node: str = "k8s-w1", labels: dict[str, str] | None = None,
         ready: bool = True) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


PODS = [_pod("web-2", "10.0.1.10", "k8s-w2"), _pod("web-1", "10.0.1.9")]
LIST = {"apiVersion": "v1", "kind": "List", "items": PODS}


def test_jsonpath_templates_as_kubectl() -> None:
    assert jsonpath_output("{.items[*].metadata.name}", LIST) == "web-2 web-1"
    assert jsonpath_output('{range .items[*]}{.metadata.name}{"\\t"}{.status.podIP}{"\\n"}{end}', LIST) == (
        "web-2\t10.0.1.10\nweb-1\t10.0.1.9\n")
    assert jsonpath_output('{.items[?(@.spec.nodeName=="k8s-w2")].metadata.name}', LIST) == "web-2"
    assert jsonpath_output("ip={.status.podIP}", PODS[0]) == "ip=10.0.1.10"
    assert jsonpath_output("{.status.missing}", PODS[0]) == ""  # --allow-missing-template-keys=true
    assert jsonpath_output("{.spec.containers[0].ports}", PODS[0]) == '[{"containerPort":80}]'
    for bad in ("{.items[", "{range .items[*]}{.x}", "{end}", "{.a"):
        with pytest.raises(CLIError):
            jsonpath_output(bad, LIST)


def test_custom_columns_and_sort_by() -> None:
    text = custom_columns("NAME:.metadata.name,NODE:.spec.nodeName,X:.status.nope", sort_by(PODS, ".metadata.name"))
    assert text.splitlines() == ["NAME    NODE     X", "web-1   k8s-w1   <none>", "web-2   k8s-w2   <none>"]
    assert custom_columns("N:.metadata.name", PODS, headers=False).splitlines() == ["web-2", "web-1"]
    with pytest.raises(CLIError, match="expected <header>:<json-path-expr>"):
        custom_columns("NAME", PODS)
    counted = [{"n": 10}, {"n": 9}, {}]
    assert sort_by(counted, "{.n}") == [{}, {"n": 9}, {"n": 10}]  # numbers numerically, missing first


def test_output_format_check() -> None:
    for ok in ("wide", "name", "json", "jsonpath={.a}", "custom-columns=A:.a"):
        assert check_output(ok) == ok
    for bad in ("jsonpath=", "table", "go-template={{.a}}"):
        with pytest.raises(CLIError, match="unable to match a printer"):
            check_output(bad)


def test_names_kinds_and_all() -> None:
    assert render_other("name", PODS, single=False, headers=True) == "pod/web-2\npod/web-1"
    assert ref({"kind": "Deployment", "metadata": {"name": "web"}}) == "deployment.apps/web"
    assert [k.plural for k in kinds("all", lookup_kind)] == ["pods", "services", "deployments", "replicasets"]
    assert kinds("rs,po", lookup_kind) == [REPLICASET, lookup_kind("pods")]
    assert prefixed(lookup_kind("pods"), PODS)[0]["metadata"]["name"] == "pod/web-2"
    assert PODS[0]["metadata"]["name"] == "web-2"  # the objects themselves are untouched


def test_replicasets_from_deployment_pods() -> None:
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    dep = {"kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template}}
    h = pod_template_hash(template)
    pods = [_pod(f"web-{h}-a", "10.0.1.2", labels={"app": "web", "pod-template-hash": h}),
            _pod(f"web-{h}-b", "10.0.1.3", labels={"app": "web", "pod-template-hash": h}, ready=False),
            _pod("web-old1234-c", "10.0.1.4", labels={"app": "web", "pod-template-hash": "old1234"}),
            _pod(f"other-{h}-d", "10.0.1.5", labels={"app": "x", "pod-template-hash": h})]
    sets = {rs["metadata"]["name"]: rs for rs in replicasets([dep], pods)}
    assert set(sets) == {f"web-{h}", "web-old1234"}
    assert sets[f"web-{h}"]["spec"]["replicas"] == 2 and sets[f"web-{h}"]["status"]["readyReplicas"] == 1
    assert sets["web-old1234"]["spec"]["replicas"] == 0 and sets["web-old1234"]["status"]["replicas"] == 1


def test_wait_arguments() -> None:
    assert parse_duration("90s") == 90 and parse_duration("2m") == 120 and parse_duration("1h30m") == 5400
    assert parse_duration("45") == 45
    for bad in ("", "5x", "m", "-1s"):
        with pytest.raises(CLIError, match="invalid duration"):
            parse_duration(bad)
    assert parse_for("condition=Ready") == ("condition", "Ready", "true")
    assert parse_for("condition=Ready=false") == ("condition", "Ready", "false")
    assert parse_for("delete") == ("delete", "", "")
    with pytest.raises(CLIError, match="unrecognized condition"):
        parse_for("jsonpath={.status}")
    assert condition_met(PODS[0], "ready", "true") and not condition_met(PODS[0], "Ready", "false")
    assert not condition_met(PODS[0], "Available", "true")


class _NoCluster:
    def pods_on(self, node: str) -> list[dict]:
        return [p for p in PODS if p["spec"]["nodeName"] == node]

    def endpoints(self, ns: str, name: str) -> dict | None:
        return {"subsets": [{"addresses": [{"ip": "10.0.1.9"}, {"ip": "10.0.1.10"}]}]}

    def events(self) -> list[dict]:
        from membrane.model.event import make_event

        first = make_event(PODS[0], "Normal", "Scheduled", "Successfully assigned default/web-2 to k8s-w2",
                           "default-scheduler", now="2026-01-01T00:00:00Z")
        again = make_event(PODS[0], "Warning", "FailedCreatePodSandBox", "boom", "kubelet", "k8s-w2")
        again = make_event(PODS[0], "Warning", "FailedCreatePodSandBox", "boom", "kubelet", "k8s-w2", previous=again)
        other = make_event(PODS[1], "Normal", "Scheduled", "elsewhere", "default-scheduler")
        return [again, other, first]


def test_describe_layouts() -> None:
    pod = describe(PODS[0], _NoCluster()).splitlines()  # type: ignore[arg-type]
    assert pod[0] == "Name:             web-2" and "IP:               10.0.1.10" in pod
    events = pod[pod.index("Events:") + 1:]
    assert events[0].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert events[2].split()[:2] == ["Normal", "Scheduled"] and events[2].endswith("to k8s-w2")
    assert events[3].split()[:2] == ["Warning", "FailedCreatePodSandBox"] and "(x2 over" in events[3]
    assert len(events) == 4  # web-1's event is not web-2's
    svc = {"kind": "Service", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"type": "NodePort", "clusterIP": "10.96.1.1", "selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"}]}}
    text = describe(svc, _NoCluster())  # type: ignore[arg-type]
    assert "Endpoints:                10.0.1.9:8080,10.0.1.10:8080" in text
    assert "NodePort:                 http  30080/TCP" in text
    cnp = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "p", "namespace": "default"},
           "spec": {"endpointSelector": {"matchLabels": {"k8s:app": "web"}},
                    "egress": [{"toCIDRSet": [{"cidr": "1.0.0.0/8"}]}]}}
    lines = describe(cnp, _NoCluster()).splitlines()  # type: ignore[arg-type]
    assert lines[-1] == "Events:  <none>"
    assert lines[lines.index("Spec:") + 1:lines.index("Spec:") + 7] == [
        "  Endpoint Selector:", "    Match Labels:", "      k8s:app:  web", "  Egress:", "    To CIDR Set:",
        "      Cidr:  1.0.0.0/8"]
    assert _title("toCIDRSet") == "To CIDR Set" and _title("matchLabels") == "Match Labels"


@pytest.mark.parametrize(("argv", "message"), [
    (["get", "pods", "-o", "bogus"], "unable to match a printer"),
    (["scale", "deploy", "web", "--replicas", "-1"], "a non-negative integer is required"),
    (["scale", "pods", "web", "--replicas", "1"], "only deployments can be scaled"),
    (["wait", "pod", "web", "--for", "ready"], "unrecognized condition"),
    (["wait", "pod", "web", "--for", "condition=Ready", "--timeout", "soon"], "invalid duration"),
    (["wait", "pod", "--for", "condition=Ready"], "no name was specified"),
    (["describe", "pods,svc"], "describe takes one resource type"),
])
def test_bad_arguments_fail_before_the_store(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--lab", "no-such-lab-x", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err


def test_field_selectors() -> None:
    from membrane.cli.get_support import field_match, parse_field_selector

    pods = lookup_kind("pods")
    terms = parse_field_selector("spec.nodeName=k8s-w2,status.phase==Running", pods)
    assert [p["metadata"]["name"] for p in PODS if field_match(p, terms)] == ["web-2"]
    terms = parse_field_selector("metadata.name!=web-2,spec.restartPolicy=Always", pods)
    assert [p["metadata"]["name"] for p in PODS if field_match(p, terms)] == ["web-1"]
    with pytest.raises(CLIError, match="field label not supported: spec.nodeName"):
        parse_field_selector("spec.nodeName=x", lookup_kind("services"))
    with pytest.raises(CLIError, match="invalid field selector"):
        parse_field_selector("spec.nodeName", pods)


def test_watch_needs_one_kind_and_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--lab", "no-such-lab-x", "get", "pods,svc", "-w"]) == 1
    assert "watch is only supported on a single resource type" in capsys.readouterr().err


def test_rollout_status_messages() -> None:
    from membrane.cli.rollout_cmd import progress

    dep = {"metadata": {"name": "web"}, "spec": {"replicas": 3},
           "status": {"replicas": 4, "updatedReplicas": 1, "availableReplicas": 3}}
    assert progress(dep) == (False, 'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas '
                                    "have been updated...")
    dep["status"].update(updatedReplicas=3)
    assert progress(dep)[1].endswith("1 old replicas are pending termination...")
    dep["status"].update(replicas=3, availableReplicas=2)
    assert progress(dep)[1].endswith("2 of 3 updated replicas are available...")
    dep["status"].update(availableReplicas=3)
    assert progress(dep) == (True, 'deployment "web" successfully rolled out')


@pytest.mark.parametrize(("argv", "message"), [
    (["rollout", "status", "pod/web"], 'no rollout for "pod"'),
    (["rollout", "undo", "deployment", "a", "b"], "rollout takes one deployment name"),
    (["rollout", "status", "deploy/web", "--timeout", "x"], "invalid duration"),
])
def test_rollout_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--lab", "no-such-lab-x", *argv]) == 1
    assert message in capsys.readouterr().err
