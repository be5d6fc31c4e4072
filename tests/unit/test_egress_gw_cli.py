"""``membrane bpf egress list`` rendering and the agent's store-object conversions (pure)."""

from __future__ import annotations

from membrane.agent.egress_sync import gateway_node, source_pod
from membrane.cli.egress_cmds import render_egress


def test_render_egress_like_cilium_dbg() -> None:
    text = render_egress([
        {"source": "10.0.1.5", "destination": "0.0.0.0/0", "egress": "192.168.10.240", "gateway": "192.168.10.12"},
        {"source": "10.0.1.5", "destination": "10.0.2.0/24", "egress": "0.0.0.0", "gateway": "0.0.0.1"},
        {"source": "10.0.1.6", "destination": "203.0.113.0/24", "egress": "0.0.0.0", "gateway": "0.0.0.0"},
    ])
    lines = text.splitlines()
    assert lines[0].split() == ["Source", "IP", "Destination", "CIDR", "Egress", "IP", "Gateway", "IP"]
    assert lines[1].split() == ["10.0.1.5", "0.0.0.0/0", "192.168.10.240", "192.168.10.12"]
    assert lines[2].endswith("Excluded CIDR") and lines[3].endswith("Not Found")
    assert lines[0].index("Destination CIDR") == lines[1].index("0.0.0.0/0")  # aligned columns
    assert render_egress([]).split() == ["Source", "IP", "Destination", "CIDR", "Egress", "IP", "Gateway", "IP"]


def test_store_objects_to_rows_inputs() -> None:
    pod = {"metadata": {"name": "bot", "namespace": "default", "uid": "u1", "labels": {"a": "b"}},
           "spec": {"nodeName": "w1"}, "status": {"podIP": "10.0.1.5"}}
    assert source_pod(pod) is not None and source_pod(pod).ip == "10.0.1.5" and source_pod(pod).uid == "u1"
    assert source_pod({**pod, "spec": {"nodeName": "w1", "hostNetwork": True}}) is None
    node = {"metadata": {"name": "w2", "labels": {"gw": "y"}}, "spec": {"podCIDR": "10.0.2.0/24"},
            "status": {"addresses": [{"type": "Hostname", "address": "w2"},
                                     {"type": "InternalIP", "address": "192.168.10.12"}]}}
    gw = gateway_node(node)
    assert (gw.name, gw.ip, dict(gw.labels), gw.pod_cidrs) == ("w2", "192.168.10.12", {"gw": "y"}, ("10.0.2.0/24",))
