"""cilium-dbg-style ``endpoint list`` and ``status`` (fixed ``now``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from membrane.cli.dbg_printers import render_endpoint_list, render_status

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def endpoint(ep_id, identity, labels, ipv4, policy="none", state="ready"):
    return {"id": ep_id,
            "status": {"identity": {"id": identity}, "labels": {"security-relevant": labels},
                       "networking": {"addressing": [{"ipv4": ipv4}]},
                       "policy": {"realized": {"policy-enabled": policy}}, "state": state}}


def test_endpoint_list():
    eps = [
        endpoint(1234, 54400, ["k8s:io.kubernetes.pod.namespace=default", "k8s:app=netpod"], "10.0.1.23", "ingress"),
        endpoint(88, 1, ["reserved:host"], "", "audit-egress", "waiting-for-identity"),
    ]
    # Hand-derived widths: longest cell + 3 (minimum 5). Rows end with a tab, so STATUS is padded too; the
    # second header line lacks that column, which splits it into two blocks (header: 6+3, rows: 20+3).
    widths = [11, 19, 19, 11, 42, 7, 12]

    def line(cells, status_width):
        return "".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)) + cells[7].ljust(status_width)

    assert render_endpoint_list(eps) == "\n".join([
        line(["ENDPOINT", "POLICY (ingress)", "POLICY (egress)", "IDENTITY", "LABELS (source:key[=value])",
              "IPv6", "IPv4", "STATUS"], 9),
        "".join(c.ljust(w) for c, w in zip(["", "ENFORCEMENT", "ENFORCEMENT", "", "", "", ""], widths, strict=False)),
        line(["88", "Disabled", "Disabled (Audit)", "1", "reserved:host", "", "", "waiting-for-identity"], 23),
        line(["1234", "Enabled", "Disabled", "54400", "k8s:app=netpod", "", "10.0.1.23", "ready"], 23),
        line(["", "", "", "", "k8s:io.kubernetes.pod.namespace=default", "", "", ""], 23),
    ])


def test_endpoint_list_missing_parts():
    eps = [{"id": 5, "status": {"networking": {"addressing": []}}}, {"id": 6}]
    lines = render_endpoint_list(eps, no_headers=True).split("\n")
    assert [re.split(r"\s{2,}", line.strip()) for line in lines] == [
        ["5", "Unknown", "Unknown", "<no label id>", "no labels", "No address", "No address", "Unknown"],
        ["6", "Unknown", "Unknown", "<no label id>", "no labels", "Unknown", "Unknown", "Unknown"],
    ]


STATUS = {
    "kvstore": {"state": "Ok", "msg": "etcd: 1/1 connected, leases=1, lock leases=0, has-quorum=true: "
                                      "unix:///run/membrane/lab/etcd.sock - 3.5.15 (Leader)"},
    "kubernetes": {"state": "Disabled", "msg": ""},
    "membrane": {"state": "Ok", "msg": "0.1.0"},
    "ipam": {"ipv4": {"allocated": 3, "capacity": 254, "cidr": "10.0.1.0/24"},
             "allocations": {"10.0.1.23": "default/web-1", "10.0.1.1": "router", "10.0.1.100": "default/db"}},
    "routing": {"inter-host-routing-mode": "Native", "intra-host-routing-mode": "Legacy"},
    "attach-mode": "tc",
    "datapath-mode": "veth",
    "masquerading": {"enabled": False},
    "controllers": [
        {"name": "sync-ipcache", "status": {"consecutive-failure-count": 2, "last-failure-msg": "etcd: timeout",
                                            "last-success-timestamp": "2024-05-01T10:00:00Z",
                                            "last-failure-timestamp": "2024-05-01T11:59:59Z"}},
        {"name": "endpoint-1234-regeneration",
         "status": {"consecutive-failure-count": 0, "last-success-timestamp": "2024-05-01T11:58:30Z",
                    "last-failure-timestamp": "0001-01-01T00:00:00Z"}},
    ],
    "identity-range": {"min-identity": 256, "max-identity": 65535},
    "modules-health": [{"module-id": "agent.ipam", "level": "OK", "message": "ready"},
                       {"module-id": "agent.datapath", "level": "Degraded", "message": "map full"}],
}

KV_MSG = STATUS["kvstore"]["msg"]


def test_status_brief():
    assert render_status(STATUS, verbose=False, now=NOW) == "\n".join([
        f"KVStore:             Ok         {KV_MSG}",
        "Kubernetes:          Disabled   ",
        "Membrane:            Ok   0.1.0",
        "NodeMonitor:         Disabled",
        "IPAM:                IPv4: 3/254 allocated from 10.0.1.0/24,",
        "Routing:             Network: Native   Host: Legacy",
        "Attach Mode:         Legacy TC",
        "Device Mode:         veth",
        "Masquerading:        Disabled",
        "Controller Status:   1/2 healthy",
        "  Name           Last success   Last error   Count   Message",
        "  sync-ipcache   2h0m0s ago     1s ago       2       etcd: timeout   ",
        "Global Identity Range:   min 256, max 65535",
        "Modules Health:          Stopped(0) Degraded(1) OK(1)",
    ])


def test_status_verbose():
    text = render_status(STATUS, verbose=True, now=NOW)
    lines = text.split("\n")
    start = lines.index("Allocated addresses:")
    # sorted as strings, like cilium-dbg (so .100 comes before .23)
    assert lines[start + 1:start + 4] == ["  10.0.1.1 (router)", "  10.0.1.100 (default/db)",
                                          "  10.0.1.23 (default/web-1)"]
    assert lines[start - 1] == "IPAM:          IPv4: 3/254 allocated from 10.0.1.0/24,"
    ctrl = lines.index("Controller Status:   1/2 healthy")
    assert lines[ctrl + 1:ctrl + 4] == [
        "  Name                         Last success   Last error   Count   Message",
        "  endpoint-1234-regeneration   1m30s ago      never        0       no error        ",
        "  sync-ipcache                 2h0m0s ago     1s ago       2       etcd: timeout   ",
    ]
    assert lines[-3:] == ["Modules Health:          Stopped(0) Degraded(1) OK(1)",
                          "  ├── agent.datapath   [Degraded] map full",
                          "  └── agent.ipam   [OK] ready"]


def test_status_optional_sections():
    status = {
        "kvstore": {"state": "Failure", "msg": "Err: context deadline exceeded"},
        "membrane": {"state": "Ok", "msg": "0.1.0"},
        "nodeMonitor": {"cpus": 4, "npages": 64, "pagesize": 4096, "lost": 3, "unknown": 0},
        "ipam": {"status": "IPv4: 1/14 allocated from 10.0.9.0/28,"},
        "routing": {"inter-host-routing-mode": "Tunnel", "tunnel-protocol": "vxlan", "intra-host-routing-mode": "BPF"},
        "attach-mode": "tcx",
        "masquerading": {"enabledProtocols": {"ipv4": True, "ipv6": False}, "mode": "iptables"},
        "controllers": [],
        "hubble": {"state": "Ok", "observer": {"current-flows": 1024, "max-flows": 4096, "seen-flows": 600,
                                               "uptime": 60.0}, "metrics": {"state": "Ok"}},
    }
    # No line lacks a tab here, so one block aligns every label: "Global Identity Range:" (22) + 3.
    assert render_status(status, verbose=False, now=NOW).split("\n") == [
        "KVStore:".ljust(25) + "Failure   Err: context deadline exceeded",
        "Membrane:".ljust(25) + "Ok   0.1.0",
        "NodeMonitor:".ljust(25) + "Listening for events on 4 CPUs with 64x4096 of shared memory",
        " " * 25 + "3 events lost, 0 unknown notifications",
        "IPAM:".ljust(25) + "IPv4: 1/14 allocated from 10.0.9.0/28,",
        "Routing:".ljust(25) + "Network: Tunnel [vxlan]   Host: BPF",
        "Attach Mode:".ljust(25) + "TCX",
        "Masquerading:".ljust(25) + "IPTables [IPv4: Enabled, IPv6: Disabled]",
        "Controller Status:".ljust(25) + "0/0 healthy",
        "Global Identity Range:".ljust(25) + "Unknown",
        "Hubble:".ljust(25) + "Ok   Current/Max Flows: 1024/4096 (25.00%), Flows/s: 10.00   Metrics: Ok",
    ]


def test_failing_components_make_status_exit_non_zero():
    from membrane.cli.dbg_status import failing_components

    ok = {"ready": True, "kvstore": {"state": "Ok"}, "kubernetes": {"state": "Disabled"},
          "membrane": {"state": "Ok"}, "hubble": {"state": "Ok"}}
    assert failing_components(ok) == []
    assert failing_components({**ok, "kvstore": {"state": "Failure", "msg": "etcd: 0/1 connected"}}) == ["KVStore"]
    assert failing_components({**ok, "ready": False, "membrane": {"state": "Warning"}}) == ["Membrane"]
    assert failing_components({"ready": False}) == ["Membrane"]
    assert failing_components({**ok, "hubble": {"state": "Disabled"}}) == []
