"""``membrane status --verbose``: the cilium-dbg ``KubeProxyReplacement Details:`` section."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from membrane.cli.dbg_status import render_status

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

KPR = {
    "mode": "True",
    "device-list": [{"name": "eth1", "ip": ["192.168.10.101"]}],
    "direct-routing-device": "eth1",
    "features": {
        "nodePort": {"enabled": True, "mode": "SNAT", "algorithm": "Random", "portMin": 30000, "portMax": 32767,
                     "acceleration": "Disabled"},
        "externalIPs": {"enabled": True}, "hostPort": {"enabled": True}, "sessionAffinity": {"enabled": True},
        "gracefulTermination": {"enabled": True}, "socketLB": {"enabled": False},
        "socketLBTracing": {"enabled": False}, "bpfSocketLBHostnsOnly": False, "nat46X64": {"enabled": False},
        "annotations": [],
    },
}
STATUS = {"membrane": {"state": "Ok", "msg": "0.1.0"}, "kube-proxy-replacement": KPR,
          "hubble": {"state": "Ok", "metrics": {"state": "Ok"}},
          "encryption": {"mode": "Disabled", "msg": ""}}

DETAILS = [
    "KubeProxyReplacement Details:",
    "  Status:                 True",
    "  Socket LB:              Disabled",
    "  Socket LB Tracing:      Disabled",
    "  Socket LB Coverage:     Full",
    "  Devices:                eth1 192.168.10.101 (Direct Routing)",
    "  Mode:                   SNAT",
    "  Backend Selection:      Random",
    "  Session Affinity:       Enabled",
    "  Graceful Termination:   Enabled",
    "  NAT46/64 Support:       Disabled",
    "  XDP Acceleration:       Disabled",
    "  Services:",
    "  - ClusterIP:      Enabled",
    "  - NodePort:       Enabled (Range: 30000-32767) ",
    "  - LoadBalancer:   Enabled ",
    "  - externalIPs:    Enabled ",
    "  - HostPort:       Enabled",
    "  Annotations:",
]


def _details(status: dict) -> list[str]:
    lines = render_status(status, verbose=True, now=NOW).split("\n")
    start = lines.index("KubeProxyReplacement Details:")
    end = lines.index("  Annotations:", start)
    return lines[start:end + 1 + len(status["kube-proxy-replacement"].get("features", {}).get("annotations") or [])]


def test_details_in_verbose_after_hubble_before_encryption():
    lines = render_status(STATUS, verbose=True, now=NOW).split("\n")
    start = lines.index("KubeProxyReplacement Details:")
    assert lines[start - 1].startswith("Hubble:")
    assert lines[start:start + len(DETAILS)] == DETAILS
    assert lines[start + len(DETAILS)].startswith("Encryption:")
    assert "KubeProxyReplacement:".ljust(25) + "True   [eth1 192.168.10.101 (Direct Routing)]" in lines


def test_brief_status_has_only_the_one_line():
    text = render_status(STATUS, verbose=False, now=NOW)
    assert "KubeProxyReplacement Details:" not in text and "KubeProxyReplacement:" in text


def test_maglev_with_table_size_and_annotations():
    status = copy.deepcopy(STATUS)
    features = status["kube-proxy-replacement"]["features"]
    features["nodePort"].update(algorithm="Maglev", lutSize=16381)
    features["annotations"] = ["service.cilium.io/lb-algorithm"]
    details = _details(status)
    assert "  Backend Selection:      Maglev (Table Size: 16381)" in details
    assert details[-2:] == ["  Annotations:", "  - service.cilium.io/lb-algorithm"]


def test_dsr_dispatch_mode_only_for_dsr_and_hybrid():
    status = copy.deepcopy(STATUS)
    status["kube-proxy-replacement"]["features"]["nodePort"].update(mode="DSR", dsrMode="Geneve")
    details = _details(status)
    assert details[details.index("  Mode:                   DSR") + 1] == "    DSR Dispatch Mode:    Geneve"


def test_without_nodeport_and_features():
    status = {"kube-proxy-replacement": {"mode": "False", "device-list": [{"name": "eth1", "ip": ["192.168.10.101"]}]}}
    details = _details(status)
    assert not any(line.startswith(("  Mode:", "  Backend Selection:", "  Devices:", "  XDP")) for line in details)
    assert "  Session Affinity:       Disabled" in details
    assert details[-6:] == ["  - ClusterIP:      Enabled", "  - NodePort:       Disabled ",
                            "  - LoadBalancer:   Disabled ", "  - externalIPs:    Disabled ",
                            "  - HostPort:       Disabled", "  Annotations:"]
