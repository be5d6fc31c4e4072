"""The lab router as a BGP router: FRR's zebra and bgpd in the router namespace, when BGP is on.

With ``bgpControlPlane.enabled`` and a ``router:`` in the topology, ``lab create`` starts FRR (Debian
``frr``) in the router namespace as the seeds' BGP lab has it: ``router bgp 65000``, ``no bgp
ebgp-requires-policy``, every node a neighbor in the peer group ``CILIUM`` (``remote-as external``:
whatever ASN the CiliumBGPClusterConfig gives the nodes), and ``maximum-paths`` so a Service announced
by several nodes gets ECMP routes. zebra installs what bgpd learns into the router's kernel table:
those are the only pod-CIDR routes the router has (the lab kubelet writes none when BGP is on).

The daemons run in the foreground under the lab's supervisor, like the other lab daemons (``frr-zebra``,
``frr-bgpd`` in ``lab status``; restarted if they exit; stopped on ``lab delete``); their config, pid files, zserv and vty sockets live in ``<run dir>/frr``, so labs never
share them. ``vtysh`` finds them through ``--vty_socket``, which ``lab exec router -- vtysh`` adds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from membrane.lab import processes
from membrane.lab.daemons import DaemonSpec, LabError, spawn_supervised
from membrane.lab.paths import LabPaths
from membrane.lab.topology import LabTopology

FRR_DIR = "/usr/lib/frr"
ROUTER_ASN = 65000
MAXIMUM_PATHS = 16
DAEMONS = ("zebra", "bgpd")


def frr_dir(lab: str) -> str:
    return f"{LabPaths(lab).run_dir}/frr"


def wanted(topo: LabTopology) -> bool:
    return topo.router is not None and topo.config.bgp_control_plane_enabled


def bgpd_config(topo: LabTopology) -> str:
    assert topo.router is not None
    router_id = topo.router.ips[0].split("/")[0]
    lines = ["hostname router", "log stdout informational", "!", f"router bgp {ROUTER_ASN}",
             f" bgp router-id {router_id}", " no bgp ebgp-requires-policy", " bgp bestpath as-path multipath-relax",
             " neighbor CILIUM peer-group", " neighbor CILIUM remote-as external",
             " neighbor CILIUM timers connect 5"]
    lines += [f" neighbor {node.address} peer-group CILIUM" for node in topo.nodes]
    lines += [" address-family ipv4 unicast", f"  maximum-paths {MAXIMUM_PATHS}", " exit-address-family", "!", ""]
    return "\n".join(lines)


def specs(lab: str, topo: LabTopology) -> dict[str, DaemonSpec]:
    """``frr-zebra`` and ``frr-bgpd``: lab daemons under the lab's supervisor, in the router namespace."""
    assert topo.router is not None
    paths = LabPaths(lab)
    d = frr_dir(lab)
    return {f"frr-{daemon}": DaemonSpec(
        ["ip", "netns", "exec", paths.router_netns(topo.router.name), f"{FRR_DIR}/{daemon}", "-f", f"{d}/{daemon}.conf",
         "-i", f"{d}/{daemon}.pid", "-z", f"{d}/zserv.api", "--vty_socket", d, "-P", "0"],
        f"{paths.log_dir}/frr-{daemon}.log") for daemon in DAEMONS}


def start(lab: str, topo: LabTopology) -> dict[str, processes.ProcRecord]:
    """Write FRR's config, start zebra then bgpd; their supervisors' records, by daemon name."""
    if not os.path.exists(f"{FRR_DIR}/bgpd"):
        raise LabError(f"{FRR_DIR}/bgpd not found: run 'make setup' (installs frr)")
    d = frr_dir(lab)
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/bgpd.conf", "w") as fh:
        fh.write(bgpd_config(topo))
    with open(f"{d}/zebra.conf", "w") as fh:
        fh.write("hostname router\n")
    for name in os.listdir(d):  # FRR drops to user frr: it must read its config and create its sockets
        shutil.chown(f"{d}/{name}", "frr", "frr")
    shutil.chown(d, "frr", "frr")
    out: dict[str, processes.ProcRecord] = {}
    for name, spec in specs(lab, topo).items():
        out[name] = spawn_supervised(lab, name, spec)
        _wait_socket(f"{d}/{name.removeprefix('frr-')}.vty", name, out[name])
    return out


def _wait_socket(path: str, daemon: str, rec: processes.ProcRecord) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return
        if not processes.is_alive(rec):
            break
        time.sleep(0.05)
    raise LabError(f"FRR {daemon} did not start; see its log in the lab's log directory")


def vtysh_argv(lab: str, cmd: list[str]) -> list[str]:
    """``vtysh ...`` pointed at this lab's FRR sockets; other commands unchanged."""
    if cmd and os.path.basename(cmd[0]) == "vtysh" and "--vty_socket" not in cmd:
        return [cmd[0], "--vty_socket", frr_dir(lab), *cmd[1:]]
    return cmd


def route_world(lab: str, topo: LabTopology) -> None:
    """The world's default route: the router, so what only BGP knows (Service IPs) is reached through it."""
    from membrane.lab.world import plan_world

    plan = plan_world(lab, topo)
    if plan.router_ip:
        proc = subprocess.run(["ip", "-n", plan.netns, "route", "replace", "default", "via", plan.router_ip],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"world default route via {plan.router_ip}: {proc.stderr.strip()}")
