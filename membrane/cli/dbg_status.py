"""``membrane dbg status`` in the layout of ``cilium-dbg status`` (pkg/client FormatStatusResponse).

The agent's ``GET /v1/status`` answers with a dict in the JSON vocabulary of Cilium's
``models.StatusResponse`` (the ``cilium`` section is named ``membrane``). Every section is optional;
absent sections print nothing, except ``nodeMonitor`` (prints ``Disabled``) and ``identity-range``
(prints ``Unknown``), as cilium-dbg does. Lines appear in cilium-dbg's order::

    {
      "kvstore": {"state": "Ok", "msg": "etcd: 1/1 connected, leases=1, lock leases=0, has-quorum=true: "
                                        "unix:///run/membrane/lab/etcd.sock - 3.5.15 (Leader)"},
      "kubernetes": {"state": "Disabled", "msg": "", "k8s-api-versions": []},
      "kube-proxy-replacement": {"mode": "True", "device-list": [{"name": "eth1", "ip": ["192.168.10.101"]}],
                                 "direct-routing-device": "eth1",
                                 "features": {                                  # models.KubeProxyReplacementFeatures
                                   "nodePort": {"enabled": true, "mode": "SNAT",  # or "DSR" / "Hybrid" (+ "dsrMode")
                                                "algorithm": "Random",           # or "Maglev" (+ "lutSize": 16381)
                                                "portMin": 30000, "portMax": 32767, "acceleration": "Disabled"},
                                   "externalIPs": {"enabled": true}, "hostPort": {"enabled": true},
                                   "sessionAffinity": {"enabled": true}, "gracefulTermination": {"enabled": true},
                                   "socketLB": {"enabled": false}, "socketLBTracing": {"enabled": false},
                                   "bpfSocketLBHostnsOnly": false, "nat46X64": {"enabled": false},
                                   "annotations": []}},
      "host-firewall": {"mode": "Disabled", "devices": []},
      "cni-chaining": {"mode": "none"},
      "cni-file": {"msg": "..."},
      "membrane": {"state": "Ok", "msg": "0.1.0"},
      "nodeMonitor": {"cpus": 4, "npages": 64, "pagesize": 4096, "lost": 0, "unknown": 0},
      "ipam": {"ipv4": {"allocated": 5, "capacity": 254, "cidr": "10.0.1.0/24"},   # or "status": "<text>"
               "allocations": {"10.0.1.23": "default/web-1", "10.0.1.1": "router"}},
      "bandwidth-manager": {"enabled": false, "congestion-control": "bbr", "devices": []},
      "routing": {"inter-host-routing-mode": "Native", "intra-host-routing-mode": "Legacy",
                  "tunnel-protocol": "vxlan"},
      "attach-mode": "tc",                       # or "tcx"
      "datapath-mode": "veth",                   # or "netkit", "netkit-l2"
      "masquerading": {"enabled": false},        # + "enabledProtocols": {"ipv4", "ipv6"}, "mode": "BPF"|"iptables",
                                                 #   "ip-masq-agent", "snat-exclusion-cidr-v4"
      "controllers": [{"name": "endpoint-1234-regeneration",
                       "status": {"success-count": 3, "failure-count": 0, "consecutive-failure-count": 0,
                                  "last-success-timestamp": "2024-05-01T12:00:00Z",
                                  "last-failure-timestamp": "0001-01-01T00:00:00Z", "last-failure-msg": ""}}],
      "proxy": {"ip": "10.0.1.5", "port-range": "10000-20000", "total-redirects": 0, "envoy-deployment-mode": "embedded",
                "redirects": [{"proxy": "http", "name": "...", "proxy-port": 10001}]},
      "identity-range": {"min-identity": 256, "max-identity": 65535},
      "hubble": {"state": "Ok", "msg": "", "metrics": {"state": "Ok"},
                 "observer": {"current-flows": 4095, "max-flows": 4095, "seen-flows": 12345, "uptime": 600.0}},
      "encryption": {"mode": "Disabled", "msg": ""},
      "modules-health": [{"module-id": "agent.datapath.reconciler", "level": "OK", "message": "..."}],
      "reconcilers": [{"name": "bpf-ipcache", "healthy": true, "rows": 12, "pending": 0, "errors": 0,
                       "last-error": "", "last-full-sync": "2024-05-01T12:00:00Z", ...}]  # Membrane's own
    }

``KubeProxyReplacement Details:`` (after Hubble) needs ``verbose``, as in cilium-dbg; without ``features.nodePort``
enabled, NodePort and LoadBalancer print ``Disabled`` and Mode / Backend Selection are left out.
``hubble.observer.uptime`` is in seconds; ``modules-health`` levels are ``OK``, ``Degraded``, ``Stopped``.
With ``verbose`` (cilium-dbg ``--verbose``): all allocated addresses, all controllers, all redirects and
every module's health; otherwise the controller table lists failing controllers only. Cluster health is
not printed (Membrane has no health endpoints). ``Reconciler Status`` (after the controllers) is Membrane's
own: one line per reconciler writing a BPF map (desired rows, pending, errors, last full sync, last error).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from membrane.cli.age import time_since
from membrane.cli.egress_status import egress_gateway_lines
from membrane.cli.tabwriter import tabwrite


def _enabled(flag: Any) -> str:
    return "Enabled" if flag else "Disabled"


def _num(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _kpr_devices(kpr: dict[str, Any]) -> str:
    """``eth1 192.168.10.101 (Direct Routing), …`` (empty when the mode is ``False``)."""
    if kpr.get("mode") == "False":
        return ""
    parts = []
    for dev in kpr.get("device-list") or []:
        part = f"{dev.get('name', '')} {' '.join(dev.get('ip') or [])}"
        if dev.get("name") == kpr.get("direct-routing-device"):
            part += " (Direct Routing)"
        parts.append(part)
    return ", ".join(parts)


def _head(status: dict[str, Any]) -> list[str]:
    lines = []
    if isinstance(kv := status.get("kvstore"), dict):
        lines.append(f"KVStore:\t{kv.get('state', '')}\t{kv.get('msg', '')}")
    if isinstance(k8s := status.get("kubernetes"), dict):
        lines.append(f"Kubernetes:\t{k8s.get('state', '')}\t{k8s.get('msg', '')}")
        if k8s.get("state") != "Disabled":
            apis = sorted(str(a) for a in k8s.get("k8s-api-versions") or [])
            lines.append("Kubernetes APIs:\t[\"" + "\", \"".join(apis) + "\"]")
    if isinstance(kpr := status.get("kube-proxy-replacement"), dict):
        devices = _kpr_devices(kpr)
        lines.append(f"KubeProxyReplacement:\t{kpr.get('mode', '')}\t{f'[{devices}]' if devices else ''}")
    if isinstance(fw := status.get("host-firewall"), dict):
        line = f"Host firewall:\t{fw.get('mode', '')}"
        if fw.get("mode") != "Disabled":
            line += f"\t[{', '.join(fw.get('devices') or [])}]"
        lines.append(line)
    if isinstance(chaining := status.get("cni-chaining"), dict):
        lines.append(f"CNI Chaining:\t{chaining.get('mode', '')}")
    if isinstance(cni_file := status.get("cni-file"), dict):
        lines.append(f"CNI Config file:\t{cni_file.get('msg', '')}")
    if isinstance(me := status.get("membrane"), dict):
        lines.append(f"Membrane:\t{me.get('state', '')}   {me.get('msg', '')}")
    if isinstance(nm := status.get("nodeMonitor"), dict):
        lines.append(f"NodeMonitor:\tListening for events on {_num(nm.get('cpus'))} CPUs with "
                     f"{_num(nm.get('npages'))}x{_num(nm.get('pagesize'))} of shared memory")
        if _num(nm.get("lost")) or _num(nm.get("unknown")):
            lines.append(f"\t{_num(nm.get('lost'))} events lost, {_num(nm.get('unknown'))} unknown notifications")
    else:
        lines.append("NodeMonitor:\tDisabled")
    return lines


def ipam_status_text(ipam: dict[str, Any]) -> str:
    """``IPv4: 5/254 allocated from 10.0.1.0/24,`` from ``ipam.ipv4``, or ``ipam.status`` verbatim."""
    if isinstance(ipam.get("status"), str):
        return str(ipam["status"])
    v4 = ipam.get("ipv4")
    if not isinstance(v4, dict):
        return ""
    return f"IPv4: {_num(v4.get('allocated'))}/{_num(v4.get('capacity'))} allocated from {v4.get('cidr', '')},"


def _ipam(status: dict[str, Any], verbose: bool) -> list[str]:
    ipam = status.get("ipam")
    if not isinstance(ipam, dict):
        return []
    lines = [f"IPAM:\t{ipam_status_text(ipam)}"]
    if verbose:
        lines.append("Allocated addresses:")
        allocations = ipam.get("allocations") or {}
        lines += sorted(f"  {ip} ({owner})" for ip, owner in allocations.items())
    return lines


def _masquerading(masq: dict[str, Any], status: dict[str, Any]) -> str:
    protocols = masq.get("enabledProtocols")
    if not isinstance(protocols, dict):
        return _enabled(masq.get("enabled"))
    ipv4, ipv6 = bool(protocols.get("ipv4")), bool(protocols.get("ipv6"))
    if not ipv4 and not ipv6:
        return _enabled(False)
    text = ""
    if masq.get("mode") == "BPF":
        text = "BPF (ip-masq-agent)" if masq.get("ip-masq-agent") else "BPF"
        kpr = status.get("kube-proxy-replacement")
        if isinstance(kpr, dict):
            devices = ", ".join(str(d.get("name", "")) for d in kpr.get("device-list") or [])
            text += f"\t[{devices}]\t{masq.get('snat-exclusion-cidr-v4', '')}"
    elif masq.get("mode") == "iptables":
        text = "IPTables"
    return f"{text} [IPv4: {_enabled(ipv4)}, IPv6: {_enabled(ipv6)}]"


def _datapath(status: dict[str, Any]) -> list[str]:
    lines = []
    if isinstance(bw := status.get("bandwidth-manager"), dict):
        text = "Disabled"
        if bw.get("enabled"):
            text = (f"EDT with BPF [{str(bw.get('congestion-control', '')).upper()}] "
                    f"[{', '.join(bw.get('devices') or [])}]")
        lines.append(f"BandwidthManager:\t{text}")
    if isinstance(routing := status.get("routing"), dict):
        inter = str(routing.get("inter-host-routing-mode", ""))
        text = f"Network: {inter}"
        if inter == "Tunnel":
            text += f" [{routing.get('tunnel-protocol', '')}]"
        lines.append(f"Routing:\t{text}\tHost: {routing.get('intra-host-routing-mode', '')}")
    if status.get("attach-mode"):
        lines.append(f"Attach Mode:\t{'TCX' if status['attach-mode'] == 'tcx' else 'Legacy TC'}")
    if status.get("datapath-mode"):
        mode = status["datapath-mode"]
        lines.append(f"Device Mode:\t{mode if mode in ('veth', 'netkit', 'netkit-l2') else '?'}")
    if isinstance(masq := status.get("masquerading"), dict):
        lines.append(f"Masquerading:\t{_masquerading(masq, status)}")
    return lines


def _controllers(status: dict[str, Any], verbose: bool, now: datetime) -> list[str]:
    controllers = status.get("controllers")
    if not isinstance(controllers, list):
        return []
    failing, table = 0, ["  Name\tLast success\tLast error\tCount\tMessage"]
    for ctrl in controllers:
        st = ctrl.get("status")
        if not isinstance(st, dict):
            continue
        consecutive = _num(st.get("consecutive-failure-count"))
        if consecutive > 0:
            failing += 1
        elif not verbose:
            continue
        message = st.get("last-failure-msg") or "no error"
        table.append(f"  {ctrl.get('name', '')}\t{time_since(st.get('last-success-timestamp'), now)}\t"
                     f"{time_since(st.get('last-failure-timestamp'), now)}\t{consecutive}\t{message}\t")
    lines = [f"Controller Status:\t{len(controllers) - failing}/{len(controllers)} healthy"]
    if len(table) > 1:
        # cilium-dbg sorts the header together with the rows, then aligns them in a nested tabwriter.
        lines += tabwrite("\n".join(sorted(table)), minwidth=0, padding=3).split("\n")
    return lines


def _reconcilers(status: dict[str, Any], now: datetime) -> list[str]:
    reconcilers = status.get("reconcilers")
    if not isinstance(reconcilers, list):
        return []
    rows = [r for r in reconcilers if isinstance(r, dict)]
    healthy = sum(1 for r in rows if r.get("healthy") is True)
    table = ["  Name\tRows\tPending\tErrors\tLast full sync\tLast error"]
    for r in sorted(rows, key=lambda r: str(r.get("name", ""))):
        table.append(f"  {r.get('name', '')}\t{_num(r.get('rows'))}\t{_num(r.get('pending'))}\t{_num(r.get('errors'))}\t"
                     f"{time_since(r.get('last-full-sync'), now)}\t{r.get('last-error') or 'no error'}\t")
    lines = [f"Reconciler Status:\t{healthy}/{len(rows)} healthy"]
    if rows:
        lines += tabwrite("\n".join(table), minwidth=0, padding=3).split("\n")
    return lines


def _proxy(status: dict[str, Any], verbose: bool) -> list[str]:
    proxy = status.get("proxy")
    if not isinstance(proxy, dict):
        return []
    total = _num(proxy.get("total-redirects"))
    lines = [f"Proxy Status:\tOK, ip {proxy.get('ip', '')}, {total} redirects active on ports "
             f"{proxy.get('port-range', '')}, Envoy: {proxy.get('envoy-deployment-mode', '')}"]
    if verbose and total > 0:
        rows = sorted(f"  {r.get('proxy', '')}\t{r.get('name', '')}\t{_num(r.get('proxy-port'))}"
                      for r in proxy.get("redirects") or [])
        lines += tabwrite("\n".join(["  Protocol\tRedirect\tProxy Port", *rows]), minwidth=0, padding=3).split("\n")
    return lines


def _feature(features: dict[str, Any], name: str) -> bool:
    flag = features.get(name)
    return isinstance(flag, dict) and flag.get("enabled") is True


def _kpr_details(status: dict[str, Any]) -> list[str]:
    """``KubeProxyReplacement Details:`` (cilium-dbg prints it with ``--verbose``)."""
    kpr = status.get("kube-proxy-replacement")
    if not isinstance(kpr, dict):
        return []
    features = kpr.get("features") if isinstance(kpr.get("features"), dict) else {}
    node_port = features.get("nodePort") if isinstance(features.get("nodePort"), dict) else {}
    mode = selection = xdp = dsr = ""
    np_text = lb_text = "Disabled"
    if node_port.get("enabled") is True:
        mode = str(node_port.get("mode") or "")
        if mode in ("DSR", "Hybrid"):
            dsr = str(node_port.get("dsrMode") or "")
        np_text = f"Enabled (Range: {_num(node_port.get('portMin'))}-{_num(node_port.get('portMax'))})"
        lb_text = "Enabled"
        xdp = str(node_port.get("acceleration") or "")
        selection = str(node_port.get("algorithm") or "")
        if selection == "Maglev":
            selection += f" (Table Size: {_num(node_port.get('lutSize'))})"
    lines = ["KubeProxyReplacement Details:",
             f"  Status:\t{kpr.get('mode', '')}",
             f"  Socket LB:\t{_enabled(_feature(features, 'socketLB'))}",
             f"  Socket LB Tracing:\t{_enabled(_feature(features, 'socketLBTracing'))}",
             f"  Socket LB Coverage:\t{'Hostns-only' if features.get('bpfSocketLBHostnsOnly') is True else 'Full'}"]
    if devices := _kpr_devices(kpr):
        lines.append(f"  Devices:\t{devices}")
    if mode:
        lines.append(f"  Mode:\t{mode}")
    if dsr:
        lines.append(f"    DSR Dispatch Mode:\t{dsr}")
    if selection:
        lines.append(f"  Backend Selection:\t{selection}")
    lines += [f"  Session Affinity:\t{_enabled(_feature(features, 'sessionAffinity'))}",
              f"  Graceful Termination:\t{_enabled(_feature(features, 'gracefulTermination'))}",
              f"  NAT46/64 Support:\t{_enabled(_feature(features, 'nat46X64'))}"]
    if xdp:
        lines.append(f"  XDP Acceleration:\t{xdp}")
    lines += ["  Services:",
              "  - ClusterIP:\tEnabled",  # per-packet ClusterIP LB is always on, as in Cilium
              f"  - NodePort:\t{np_text} ",
              f"  - LoadBalancer:\t{lb_text} ",
              f"  - externalIPs:\t{_enabled(_feature(features, 'externalIPs'))} ",
              f"  - HostPort:\t{_enabled(_feature(features, 'hostPort'))}",
              "  Annotations:"]
    lines += [f"  - {a}" for a in features.get("annotations") or []]
    return lines


def _tail(status: dict[str, Any], verbose: bool) -> list[str]:
    lines = []
    if isinstance(ids := status.get("identity-range"), dict):
        lines.append(f"Global Identity Range:\tmin {_num(ids.get('min-identity'))}, max {_num(ids.get('max-identity'))}")
    else:
        lines.append("Global Identity Range:\tUnknown")
    if isinstance(hubble := status.get("hubble"), dict):
        state = str(hubble.get("state", ""))
        if hubble.get("msg"):
            state += f" {hubble['msg']}"
        fields = [state]
        if isinstance(obs := hubble.get("observer"), dict):
            parts = []
            current, maximum = _num(obs.get("current-flows")), _num(obs.get("max-flows"))
            if maximum > 0:
                parts.append(f"Current/Max Flows: {current}/{maximum} ({current / maximum * 100:.2f}%)")
            uptime = obs.get("uptime")
            if isinstance(uptime, int | float) and uptime > 0:
                parts.append(f"Flows/s: {_num(obs.get('seen-flows')) / uptime:.2f}")
            fields.append(", ".join(parts))
        if isinstance(metrics := hubble.get("metrics"), dict):
            fields.append(f"Metrics: {metrics.get('state', '')}")
        lines.append("Hubble:\t" + "\t".join(fields))
    if verbose:
        lines += _kpr_details(status)
    if isinstance(enc := status.get("encryption"), dict):
        lines.append(f"Encryption:\t{enc.get('mode', '')}\t{enc.get('msg', '')}")
    lines += egress_gateway_lines(status)
    if isinstance(bgp := status.get("bgp"), dict) and bgp.get("enabled"):
        peers = bgp.get("peers") or {}
        up = sum(1 for s in peers.values() if s == "established")
        lines.append(f"BGP Control Plane:\t{bgp.get('state', '')}\t{bgp.get('msg', '')}, {up}/{len(peers)} peers established")
    if isinstance(modules := status.get("modules-health"), list):
        tally = {"Stopped": 0, "Degraded": 0, "OK": 0}
        for module in modules:
            level = str(module.get("level", ""))
            tally[level] = tally.get(level, 0) + 1
        lines.append(f"Modules Health:\tStopped({tally['Stopped']}) Degraded({tally['Degraded']}) OK({tally['OK']})")
        if verbose:
            ordered = sorted(modules, key=lambda m: str(m.get("module-id", "")))
            for index, module in enumerate(ordered):
                branch = "└──" if index == len(ordered) - 1 else "├──"
                lines.append(f"  {branch} {module.get('module-id', '')}   [{module.get('level', '')}] "
                             f"{module.get('message', '')}".rstrip())
    return lines


def render_status(status: dict[str, Any], verbose: bool, now: datetime | None = None) -> str:
    """The status page; ``now`` (default: the current time) is used for the controllers' ``… ago``."""
    current = now if now is not None else datetime.now(UTC)
    lines = (_head(status) + _ipam(status, verbose) + _datapath(status) + _controllers(status, verbose, current)
             + _reconcilers(status, current) + _proxy(status, verbose) + _tail(status, verbose))
    # cilium-dbg prints the whole page through tabwriter.NewWriter(os.Stdout, 2, 0, 3, ' ', 0).
    return tabwrite("\n".join(lines), minwidth=2, padding=3)


# Sections whose ``state`` says whether a component works, with the names cilium-dbg prints.
_COMPONENTS = {"kvstore": "KVStore", "kubernetes": "Kubernetes", "membrane": "Membrane", "hubble": "Hubble",
               "bgp": "BGP"}


def agent_warnings(status: dict[str, Any]) -> list[str]:
    """What recovered on its own but should be seen: a BGP speaker that died and was restarted."""
    speaker = (status.get("bgp") or {}).get("speaker") or {} if isinstance(status.get("bgp"), dict) else {}
    if speaker.get("restarts"):
        return [f"BGP speaker restarted {speaker['restarts']} times (last: {speaker.get('last-exit', '')})"]
    return []


def failing_components(status: dict[str, Any]) -> list[str]:
    """Components in ``Failure`` (and Membrane itself unless ``Ok``/``Disabled``, cilium-dbg's
    ``isUnhealthy``), plus ``Membrane`` when the agent is not ready: ``membrane status`` exits 1 on any."""
    failing = []
    for section, name in _COMPONENTS.items():
        state = (status.get(section) or {}).get("state") if isinstance(status.get(section), dict) else None
        if state == "Failure" or (section == "membrane" and state not in (None, "Ok", "Disabled")):
            failing.append(name)
    if status.get("ready") is False and "Membrane" not in failing:
        failing.append("Membrane")
    return failing
