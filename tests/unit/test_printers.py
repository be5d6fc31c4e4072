"""kubectl-style tables and -o yaml/json for ``membrane get`` (fixed ``now``)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
import yaml

from membrane.cli.printers import no_resources_message, render_objects, render_table
from membrane.cli.selector_text import format_label_selector, format_labels, selector_string

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def meta(name, namespace="default", created="2024-05-01T11:59:55Z", **extra):
    m = {"name": name, "creationTimestamp": created}
    if namespace:
        m["namespace"] = namespace
    m.update(extra)
    return m


def running(name="app", restarts=0):
    return {"name": name, "ready": True, "restartCount": restarts, "state": {"running": {"startedAt": "x"}}}


def pod(name, namespace="default", created="2024-05-01T11:59:55Z", containers=1, statuses=(), node="",
        ip="", **status):
    obj = {"metadata": meta(name, namespace, created),
           "spec": {"containers": [{"name": f"c{i}"} for i in range(containers)]},
           "status": {"containerStatuses": list(statuses), **status}}
    if node:
        obj["spec"]["nodeName"] = node
    if ip:
        obj["status"]["podIP"] = ip
        obj["status"]["podIPs"] = [{"ip": ip}]
    return obj


PODS = [
    pod("web-1", statuses=[running()], phase="Running", node="lab-worker", ip="10.0.1.23"),
    pod("web-2", created="2024-05-01T09:00:00Z", containers=2, phase="Pending", reason="ContainerCreating"),
    pod("db", namespace="data", created="2024-04-20T12:00:00Z", phase="Pending",
        statuses=[{"name": "db", "ready": False, "restartCount": 0,
                   "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}}]),
]


def test_pods_table():
    assert render_table("pods", PODS, wide=False, all_namespaces=False, now=NOW) == (
        "NAME    READY   STATUS              RESTARTS   AGE\n"
        "web-1   1/1     Running             0          5s\n"
        "web-2   0/2     ContainerCreating   0          3h\n"
        "db      0/1     ErrImagePull        0          11d"
    )


def test_pods_wide_all_namespaces():
    assert render_table("po", PODS, wide=True, all_namespaces=True, now=NOW) == (
        "NAMESPACE   NAME    READY   STATUS              RESTARTS   AGE   IP          NODE         "
        "NOMINATED NODE   READINESS GATES\n"
        "default     web-1   1/1     Running             0          5s    10.0.1.23   lab-worker   "
        "<none>           <none>\n"
        "default     web-2   0/2     ContainerCreating   0          3h    <none>      <none>       "
        "<none>           <none>\n"
        "data        db      0/1     ErrImagePull        0          11d   <none>      <none>       "
        "<none>           <none>"
    )


def test_pod_restarts_show_time_of_last_termination():
    crashed = running(restarts=3)
    crashed["lastState"] = {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:58:00Z"}}
    table = render_table("pods", [pod("p", statuses=[crashed], phase="Running")], False, False, NOW)
    assert re.split(r"\s{2,}", table.splitlines()[1]) == ["p", "1/1", "Running", "3 (2m ago)", "5s"]


@pytest.mark.parametrize(
    "state,phase,extra_meta,expected",
    [
        ({"terminated": {"exitCode": 2}}, "Running", {}, "ExitCode:2"),
        ({"terminated": {"exitCode": 0, "signal": 9}}, "Running", {}, "Signal:9"),
        ({"terminated": {"reason": "Completed", "exitCode": 0}}, "Succeeded", {}, "Completed"),
        ({"running": {}}, "Running", {"deletionTimestamp": "2024-05-01T11:59:59Z"}, "Terminating"),
        ({"waiting": {"reason": "CrashLoopBackOff"}}, "Running", {}, "CrashLoopBackOff"),
    ],
)
def test_pod_status_column(state, phase, extra_meta, expected):
    p = pod("p", statuses=[{"name": "c0", "ready": False, "restartCount": 0, "state": state}], phase=phase)
    p["metadata"].update(extra_meta)
    assert render_table("pods", [p], False, False, NOW).splitlines()[1].split()[2] == expected


def test_completed_container_next_to_running_one_shows_running_or_not_ready():
    done = {"name": "init", "ready": False, "restartCount": 0, "state": {"terminated": {"reason": "Completed"}}}
    for ready, expected in (("True", "Running"), ("False", "NotReady")):
        p = pod("p", containers=2, statuses=[running("a"), done], phase="Running",
                conditions=[{"type": "Ready", "status": ready}])
        assert render_table("pods", [p], False, False, NOW).splitlines()[1].split()[1:3] == ["1/2", expected]


def deployment(name, replicas, ready, updated, available, created="2024-05-01T10:00:00Z"):
    return {"metadata": meta(name, created=created),
            "spec": {"replicas": replicas,
                     "selector": {"matchLabels": {"app": name},
                                  "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]},
                     "template": {"spec": {"containers": [{"name": "web", "image": "membrane/echo:1"},
                                                          {"name": "log", "image": "busybox"}]}}},
            "status": {"readyReplicas": ready, "updatedReplicas": updated, "availableReplicas": available}}


def test_deployments_table_and_wide():
    deps = [deployment("echo", 3, 2, 3, 2), {"metadata": meta("bare"), "spec": {}, "status": {}}]
    assert render_table("deploy", deps, False, False, NOW) == (
        "NAME   READY   UP-TO-DATE   AVAILABLE   AGE\n"
        "echo   2/3     3            2           120m\n"
        "bare   0/1     0            0           5s"
    )
    wide = render_table("deployments", deps[:1], True, False, NOW)
    assert wide == (
        "NAME   READY   UP-TO-DATE   AVAILABLE   AGE    CONTAINERS   IMAGES                    SELECTOR\n"
        "echo   2/3     3            2           120m   web,log      membrane/echo:1,busybox   "
        "app=echo,tier in (api,web)"
    )


def node(name, ready="True", roles=(), created="2024-04-30T12:00:00Z", **spec):
    labels = {f"node-role.kubernetes.io/{r}": "" for r in roles}
    labels["kubernetes.io/hostname"] = name
    return {"metadata": {"name": name, "creationTimestamp": created, "labels": labels},
            "spec": spec,
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                                      {"type": "Ready", "status": ready}],
                       "addresses": [{"type": "Hostname", "address": name},
                                     {"type": "InternalIP", "address": "192.168.100.11"}],
                       "nodeInfo": {"kubeletVersion": "v1.30.0-membrane", "osImage": "Debian GNU/Linux 12",
                                    "kernelVersion": "6.18.0", "containerRuntimeVersion": "membrane-lab://0.1.0"}}}


def test_nodes_table_and_wide():
    nodes = [node("lab-control-plane", roles=["control-plane"], podCIDR="10.0.0.0/24", podCIDRs=["10.0.0.0/24"]),
             node("lab-worker", ready="Unknown", unschedulable=True, podCIDR="10.0.1.0/24")]
    assert render_table("nodes", nodes, False, True, NOW) == (
        "NAME                STATUS                        ROLES           AGE   VERSION\n"
        "lab-control-plane   Ready                         control-plane   24h   v1.30.0-membrane\n"
        "lab-worker          NotReady,SchedulingDisabled   <none>          24h   v1.30.0-membrane"
    )
    # Hand-derived widths: longest cell + 3 per column (VERSION 16+3, OS-IMAGE 19+3, CONTAINER-RUNTIME 20+3).
    widths = [20, 30, 16, 6, 19, 17, 14, 22, 17, 23]

    def line(*cells):
        return "".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)) + cells[-1]

    assert render_table("no", nodes, True, False, NOW) == "\n".join([
        line("NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE",
             "KERNEL-VERSION", "CONTAINER-RUNTIME", "POD-CIDR"),
        line("lab-control-plane", "Ready", "control-plane", "24h", "v1.30.0-membrane", "192.168.100.11", "<none>",
             "Debian GNU/Linux 12", "6.18.0", "membrane-lab://0.1.0", "10.0.0.0/24"),
        line("lab-worker", "NotReady,SchedulingDisabled", "<none>", "24h", "v1.30.0-membrane", "192.168.100.11",
             "<none>", "Debian GNU/Linux 12", "6.18.0", "membrane-lab://0.1.0", "10.0.1.0/24"),
    ])


def test_node_without_ready_condition_is_unknown():
    n = node("x")
    n["status"]["conditions"] = []
    assert render_table("nodes", [n], False, False, NOW).splitlines()[1].split()[1] == "Unknown"


def test_namespaces_table():
    namespaces = [{"metadata": {"name": "default", "creationTimestamp": "2024-04-30T12:00:00Z"},
                   "status": {"phase": "Active"}},
                  {"metadata": {"name": "lab-x", "creationTimestamp": "2024-05-01T11:00:00Z"}}]
    assert render_table("ns", namespaces, False, True, NOW) == (
        "NAME      STATUS   AGE\n"
        "default   Active   24h\n"
        "lab-x     Active   60m"
    )


def service(name, svc_type=None, cluster_ip="10.96.0.10", ports=(), selector=None, **status):
    spec = {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": list(ports)}
    if svc_type:
        spec["type"] = svc_type
    if selector is not None:
        spec["selector"] = selector
    return {"metadata": meta(name, created="2024-05-01T11:00:00Z"), "spec": spec, "status": status}


def test_services_table_and_wide():
    services = [
        service("echo", ports=[{"port": 80, "protocol": "TCP", "targetPort": 8080}], selector={"app": "echo"}),
        service("dns", cluster_ip="10.96.0.53", ports=[{"port": 53, "protocol": "UDP"}, {"port": 53}]),
        service("np", "NodePort", "10.96.7.1", [{"port": 80, "nodePort": 30080, "protocol": "TCP"}],
                selector={"tier": "web", "app": "np"}),
        service("lb", "LoadBalancer", "10.96.9.9", [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]),
        service("lb2", "LoadBalancer", "10.96.9.8", [{"port": 80, "nodePort": 31080}],
                loadBalancer={"ingress": [{"ip": "172.18.255.200"}]}),
        service("headless", cluster_ip="None"),
    ]
    assert render_table("svc", services, False, False, NOW) == (
        "NAME       TYPE           CLUSTER-IP   EXTERNAL-IP      PORT(S)         AGE\n"
        "echo       ClusterIP      10.96.0.10   <none>           80/TCP          60m\n"
        "dns        ClusterIP      10.96.0.53   <none>           53/UDP,53/TCP   60m\n"
        "np         NodePort       10.96.7.1    <none>           80:30080/TCP    60m\n"
        "lb         LoadBalancer   10.96.9.9    <pending>        443:31443/TCP   60m\n"
        "lb2        LoadBalancer   10.96.9.8    172.18.255.200   80:31080/TCP    60m\n"
        "headless   ClusterIP      None         <none>           <none>          60m"
    )
    wide = render_table("services", services[:3], True, True, NOW).splitlines()
    assert wide[0].split() == ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    assert [line.split()[-1] for line in wide[1:]] == ["app=echo", "<none>", "app=np,tier=web"]


def test_network_policies_table():
    pols = [{"metadata": meta("deny-all"), "spec": {"podSelector": {}}},
            {"metadata": meta("allow-web"), "spec": {"podSelector": {
                "matchLabels": {"role": "db"},
                "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]},
                                     {"key": "canary", "operator": "DoesNotExist"}]}}}]
    assert render_table("netpol", pols, False, False, NOW) == (
        "NAME        POD-SELECTOR                       AGE\n"
        "deny-all    <none>                             5s\n"
        "allow-web   !canary,env notin (prod),role=db   5s"
    )


def test_cilium_policies_tables():
    cnp = [{"metadata": meta("allow-dns", namespace="kube-system"),
            "status": {"conditions": [{"type": "Valid", "status": "True"}]}},
           {"metadata": meta("pending")}]
    assert render_table("cnp", cnp, False, True, NOW) == (
        "NAMESPACE     NAME        AGE   VALID\n"
        "kube-system   allow-dns   5s    True\n"
        "default       pending     5s    "
    )
    ccnp = [{"metadata": meta("host-fw", namespace=None),
             "status": {"conditions": [{"type": "Valid", "status": "False"}]}}]
    assert render_table("CiliumClusterwideNetworkPolicy", ccnp, False, True, NOW) == (
        "NAME      AGE   VALID\n"
        "host-fw   5s    False"
    )


def test_other_kinds_print_name_and_age():
    objs = [{"metadata": meta("pol", namespace=None, created="2024-05-01T11:00:00Z")}]
    assert render_table("ciliuml2announcementpolicies", objs, False, True, NOW) == "NAME   AGE\npol    60m"


def test_ip_pools_print_ciliums_columns():
    conds = [{"type": "cilium.io/PoolConflict", "status": "True", "message": "overlaps"},
             {"type": "cilium.io/IPsAvailable", "status": "Unknown", "message": "254"}]
    objs = [{"metadata": meta("red-pool", namespace=None, created="2024-05-01T11:00:00Z"),
             "spec": {"disabled": True}, "status": {"conditions": conds}}]
    assert render_table("ippools", objs, False, True, NOW) == (
        "NAME       DISABLED   CONFLICTING   IPS AVAILABLE   AGE\n"
        "red-pool   true       True          254             60m")


def test_leases_print_holder():
    objs = [{"metadata": meta("cilium-l2announce-default-web", namespace="kube-system", created="2024-05-01T11:00:00Z"),
             "spec": {"holderIdentity": "k8s-w1"}}]
    assert render_table("leases", objs, False, False, NOW) == (
        "NAME                            HOLDER   AGE\n"
        "cilium-l2announce-default-web   k8s-w1   60m")


def test_missing_creation_timestamp_is_unknown():
    assert render_table("ns", [{"metadata": {"name": "x"}}], False, False, NOW) == (
        "NAME   STATUS   AGE\nx      Active   <unknown>")


@pytest.mark.parametrize(
    "kind,namespace,all_ns,message",
    [("pods", "default", False, "No resources found in default namespace."),
     ("svc", "kube-system", False, "No resources found in kube-system namespace."),
     ("pods", "default", True, "No resources found"),
     ("nodes", "default", False, "No resources found"),
     ("ccnp", "default", False, "No resources found")],
)
def test_empty_results(kind, namespace, all_ns, message):
    assert render_table(kind, [], False, all_ns, NOW, namespace=namespace) == message
    assert no_resources_message(kind, namespace, all_ns) == message


def test_selector_helpers():
    assert format_labels({"b": "2", "a": "1"}) == "a=1,b=2"
    assert format_labels({}) == "<none>"
    assert selector_string({"matchExpressions": [{"key": "k", "operator": "In", "values": ["b", "a"]},
                                                 {"key": "e", "operator": "Exists"}]}) == "e,k in (a,b)"
    assert format_label_selector({"matchExpressions": [{"key": "k", "operator": "Gt"}]}) == "<error>"


OBJ = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "default"},
       "spec": {"containers": [{"name": "app", "image": "membrane/echo:1"}]}}


def test_render_single_object_json_and_yaml():
    assert render_objects([OBJ], "json", single=True) == json.dumps(OBJ, indent=4)
    text = render_objects([OBJ], "yaml", single=True)
    assert text.startswith("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-1\n")
    assert not text.endswith("\n")
    assert yaml.safe_load(text) == OBJ


def test_render_list():
    expected = {"apiVersion": "v1", "items": [OBJ, OBJ], "kind": "List", "metadata": {"resourceVersion": ""}}
    assert json.loads(render_objects([OBJ, OBJ], "json", single=False)) == expected
    assert yaml.safe_load(render_objects([OBJ, OBJ], "yaml", single=False)) == expected
    assert json.loads(render_objects([], "json", single=False))["items"] == []
    assert render_objects([], "json", single=False).splitlines()[1] == '    "apiVersion": "v1",'


def test_render_objects_errors():
    with pytest.raises(ValueError, match="output format 'xml'"):
        render_objects([OBJ], "xml", single=True)
    with pytest.raises(ValueError, match="2 objects given"):
        render_objects([OBJ, OBJ], "yaml", single=True)


def test_load_balancer_and_external_name_columns():
    long_lb = service("lb", "LoadBalancer", "10.96.1.1", [{"port": 80, "nodePort": 30001}],
                      loadBalancer={"ingress": [{"ip": "172.18.255.201"}, {"hostname": "lb.example.internal"}]})
    ext = {"metadata": meta("ext", created="2024-05-01T11:00:00Z"),
           "spec": {"type": "ExternalName", "externalName": "db.example.internal"}}
    lines = render_table("svc", [long_lb, ext], False, False, NOW).splitlines()
    assert re.split(r"\s{2,}", lines[1])[3] == "172.18.255.20..."  # cut to 16 characters without -o wide
    assert re.split(r"\s{2,}", lines[2])[2:4] == ["<none>", "db.example.internal"]
    wide = render_table("svc", [long_lb], True, False, NOW).splitlines()
    assert re.split(r"\s{2,}", wide[1])[3] == "172.18.255.201,lb.example.internal"
