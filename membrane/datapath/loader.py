"""Load the node's datapath (bpf/lxc.c for endpoints, bpf/host.c for the node device), pin it, and attach it.

One ``NodeDatapath`` per node agent. Maps are pinned by name under the node's pin directory
(``/sys/fs/bpf/membrane/<lab>/<node>/``) and reused by every later load, so an agent restart
keeps the maps and their contents; programs are pinned under ``<pin_dir>/progs/``. tc calls act
on the calling thread's network namespace (the agent runs inside its node's netns).
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from membrane.datapath.bpf.bpf_object import BpfObject
from membrane.datapath.bpf.errors import BpfError
from membrane.datapath.bpf.syscalls import prog_info
from membrane.datapath.bpf.tc import Direction, tc_attach, tc_detach, tc_hook_create, tc_query
from membrane.datapath.maps.abi import abi_drift
from membrane.datapath.maps.conntrack import ConntrackMap
from membrane.datapath.maps.egress import EgressMap
from membrane.datapath.maps.endpoints import EndpointsMap
from membrane.datapath.maps.host_endpoint import HostEndpointMap
from membrane.datapath.maps.ipcache import IpcacheMap
from membrane.datapath.maps.ipmasq import IpMasqMap
from membrane.datapath.maps.lb import LBMaps
from membrane.datapath.maps.metrics import MetricCounters, MetricKey, MetricsMap
from membrane.datapath.maps.nat import HostConfigMap, HostSettings, NatMap
from membrane.datapath.maps.pinned import PinnedMap
from membrane.datapath.maps.policy import PolicyMap

BPF_DIR_ENV = "MEMBRANE_BPF_DIR"
LXC_OBJECT = "lxc.o"
FROM_CONTAINER = "from_container"  # tc ingress of the host-side veth: packets the pod sends
TO_CONTAINER = "to_container"  # tc egress of the host-side veth: packets to the pod
LXC_PROGRAMS = ((FROM_CONTAINER, Direction.INGRESS), (TO_CONTAINER, Direction.EGRESS))
HOST_OBJECT = "host.o"
FROM_NETDEV = "from_netdev"  # tc ingress of the node device: packets arriving at the node
TO_NETDEV = "to_netdev"  # tc egress of the node device: packets leaving it
HOST_PROGRAMS = ((FROM_NETDEV, Direction.INGRESS), (TO_NETDEV, Direction.EGRESS))
TC_HANDLE = 1
TC_PRIORITY = 1
PROGS_SUBDIR = "progs"


# Keep in step with the Makefile's build/bpf/%.o rule.
CLANG_FLAGS = ("-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-D__TARGET_ARCH_x86")


def find_object(name: str) -> str:
    """Path of a compiled object (``lxc`` or ``lxc.o``): in $MEMBRANE_BPF_DIR when set, else in
    the repository's build/bpf/."""
    filename = name if name.endswith(".o") else f"{name}.o"
    if os.sep in filename:
        raise ValueError(f"BPF object name {name!r}: a bare name like 'lxc' is expected")
    directory = os.environ.get(BPF_DIR_ENV) or str(repo_root() / "build" / "bpf")
    path = os.path.join(directory, filename)
    if not os.path.isfile(path):
        hint = f"${BPF_DIR_ENV}" if os.environ.get(BPF_DIR_ENV) else "build/bpf (run `make bpf`)"
        raise FileNotFoundError(f"BPF object {filename} not found in {directory} ({hint})")
    return path


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def compile_object(name: str, out_dir: str, source_dir: str | None = None) -> str:
    """Compile ``bpf/<name>.c`` into ``<out_dir>/<name>.o`` with the Makefile's flags (for tests
    and tools that run without ``make bpf``); raises BpfError with clang's output on failure."""
    base = name.removesuffix(".o").removesuffix(".c")
    src_dir = Path(source_dir) if source_dir else repo_root() / "bpf"
    out = os.path.join(out_dir, f"{base}.o")
    os.makedirs(out_dir, exist_ok=True)
    cmd = ["clang", *CLANG_FLAGS, "-I", str(src_dir / "lib"), "-I", "/usr/include/x86_64-linux-gnu",
           "-c", str(src_dir / f"{base}.c"), "-o", out]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise BpfError(errno.ENOENT, "compile BPF", "clang is not installed (apt: clang)") from None
    if proc.returncode != 0:
        raise BpfError(errno.EINVAL, f"compile {src_dir / base}.c", proc.stderr.strip()[-4000:])
    return out


def _bpffs_mounts() -> list[str]:
    with open("/proc/self/mounts") as mounts:
        return [fields[1] for fields in (line.split() for line in mounts) if len(fields) > 2 and fields[2] == "bpf"]


def _check_on_bpffs(pin_dir: str) -> str:
    path = os.path.normpath(os.path.abspath(pin_dir))
    if not any(path.startswith(mount.rstrip("/") + "/") for mount in _bpffs_mounts()):
        raise BpfError(
            errno.EINVAL, f"pin directory {pin_dir}", "not below a mounted bpf filesystem (mount -t bpf bpf /sys/fs/bpf)"
        )
    return path


def remove_pins(pin_dir: str) -> bool:
    """Unlink every pin below ``pin_dir`` and the directories; False if it did not exist.
    Refuses paths that are not inside a bpf filesystem. Attached programs keep running until
    their devices go away; maps live on while something still uses them."""
    path = _check_on_bpffs(pin_dir)
    if not os.path.isdir(path):
        return False
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            os.unlink(os.path.join(root, name))
        for name in dirs:
            os.rmdir(os.path.join(root, name))
    os.rmdir(path)
    return True


class NodeDatapath:
    """The node's programs and maps: ``load()``, ``attach_endpoint(ifindex)``, ``endpoints``, …"""

    def __init__(self, pin_dir: str, object_path: str | None = None, host_object_path: str | None = None) -> None:
        self.pin_dir = _check_on_bpffs(pin_dir)
        self._object_path = object_path
        self._host_object_path = host_object_path
        self._obj: BpfObject | None = None
        self._host_obj: BpfObject | None = None
        self._endpoints: EndpointsMap | None = None
        self._metrics: MetricsMap | None = None
        self._lb: LBMaps | None = None
        self._maps: dict[str, PinnedMap] = {}  # ipcache, policy, conntrack: opened on first use
        self._prog_ids: dict[str, int] = {}
        self._host_prog_ids: dict[str, int] = {}  # from_netdev, to_netdev once a device is attached

    # -- loading ---------------------------------------------------------------------------

    def load(self) -> None:
        """Load lxc.o, creating the pinned maps or reusing existing ones (contents kept), and
        pin the programs. Refuses an object whose map structs differ from the Python mirrors."""
        if self._obj is not None:
            raise BpfError(errno.EALREADY, f"datapath {self.pin_dir}", "already loaded")
        path = self._object_path or find_object(LXC_OBJECT)
        drift = abi_drift(path)
        if drift:
            raise BpfError(errno.EPROTO, f"{path}: map layouts differ from membrane/datapath/maps", "\n".join(drift))
        obj = BpfObject.open(path, pin_root=self.pin_dir)
        try:
            obj.load()
            for name, _direction in LXC_PROGRAMS:
                obj.pin_program(name, os.path.join(self.pin_dir, PROGS_SUBDIR, name))
                self._prog_ids[name] = prog_info(obj.program_fd(name)).id
        except BaseException:
            obj.close()
            self._prog_ids.clear()
            raise
        self._obj = obj

    @property
    def loaded(self) -> bool:
        return self._obj is not None

    def _loaded(self) -> BpfObject:
        if self._obj is None:
            raise BpfError(errno.ENOENT, f"datapath {self.pin_dir}", "not loaded (call load() first)")
        return self._obj

    @property
    def program_ids(self) -> dict[str, int]:
        """Kernel ids of this load's programs, by name (compare with :meth:`attached`)."""
        self._loaded()
        return dict(self._prog_ids)

    # -- attaching -------------------------------------------------------------------------

    def attach_endpoint(self, ifindex: int) -> None:
        """Ensure clsact on the device and attach both programs, replacing older ones in place
        (each swap is one netlink request, so traffic always meets a program)."""
        obj = self._loaded()
        tc_hook_create(ifindex)
        for name, direction in LXC_PROGRAMS:
            tc_attach(ifindex, direction, obj.program_fd(name), handle=TC_HANDLE, priority=TC_PRIORITY, replace=True)

    def detach_endpoint(self, ifindex: int) -> bool:
        """Remove both programs from the device; False if neither was attached (or it is gone)."""
        removed = [tc_detach(ifindex, direction, TC_HANDLE, TC_PRIORITY) for _name, direction in LXC_PROGRAMS]
        return any(removed)

    def reattach_all(self, ifindexes: Iterable[int]) -> dict[int, BpfError]:
        """Attach this load's programs to every device; returns the failures by ifindex (e.g.
        a device that vanished meanwhile) after trying them all."""
        failures: dict[int, BpfError] = {}
        for ifindex in ifindexes:
            try:
                self.attach_endpoint(ifindex)
            except BpfError as exc:
                failures[ifindex] = exc
        return failures

    def attached(self, ifindex: int) -> dict[str, int | None]:
        """Program id attached at each of our hooks of the device (None where nothing is)."""
        return {name: tc_query(ifindex, direction, TC_HANDLE, TC_PRIORITY) for name, direction in LXC_PROGRAMS}

    # -- the node device (bpf/host.c) ------------------------------------------------------

    def _load_host(self) -> BpfObject:
        """Load host.o once, sharing this node's pinned maps by name; pin its programs."""
        if self._host_obj is not None:
            return self._host_obj
        self._loaded()
        path = self._host_object_path or find_object(HOST_OBJECT)
        drift = abi_drift(path, present_only=True)
        if drift:
            raise BpfError(errno.EPROTO, f"{path}: map layouts differ from membrane/datapath/maps", "\n".join(drift))
        obj = BpfObject.open(path, pin_root=self.pin_dir)
        try:
            obj.load()
            for name, _direction in HOST_PROGRAMS:
                obj.pin_program(name, os.path.join(self.pin_dir, PROGS_SUBDIR, name))
                self._host_prog_ids[name] = prog_info(obj.program_fd(name)).id
        except BaseException:
            obj.close()
            self._host_prog_ids.clear()
            raise
        self._host_obj = obj
        return obj

    def attach_host_device(self, ifindex: int, node_ip: str, native_routing_cidr: str | None = None,
                           masquerade: bool = True, host_routing: bool = False,
                           ip_masq_agent: bool = False) -> None:
        """Write the node device's settings (mb_host_config), then attach from_netdev (tc
        ingress) and to_netdev (tc egress) to the device: NodePort/ExternalIP/LoadBalancer
        frontends for clients outside the cluster, and BPF masquerade of pod traffic to
        destinations outside ``native_routing_cidr`` (when ``masquerade``). With ``host_routing``
        pod traffic bypasses the node's IP stack (eBPF host routing, bpf/lib/fib.h). With
        ``ip_masq_agent`` the prefixes of mb_ipmasq_v4 are not masqueraded either (``ipmasq``)."""
        settings = HostSettings(node_ip, native_routing_cidr, masquerade, host_routing, ip_masq_agent)
        obj = self._load_host()
        self.host_config.write(settings)
        tc_hook_create(ifindex)
        for name, direction in HOST_PROGRAMS:
            tc_attach(ifindex, direction, obj.program_fd(name), handle=TC_HANDLE, priority=TC_PRIORITY, replace=True)

    def detach_host_device(self, ifindex: int) -> bool:
        """Remove both host programs from the device; False if neither was attached."""
        removed = [tc_detach(ifindex, direction, TC_HANDLE, TC_PRIORITY) for _name, direction in HOST_PROGRAMS]
        return any(removed)

    @property
    def host_program_ids(self) -> dict[str, int]:
        """Kernel ids of the host programs (empty until a device was attached)."""
        return dict(self._host_prog_ids)

    def host_attached(self, ifindex: int) -> dict[str, int | None]:
        """Program id attached at each host hook of the device (None where nothing is)."""
        return {name: tc_query(ifindex, direction, TC_HANDLE, TC_PRIORITY) for name, direction in HOST_PROGRAMS}

    # -- maps ------------------------------------------------------------------------------

    @property
    def endpoints(self) -> EndpointsMap:
        self._loaded()
        if self._endpoints is None:
            self._endpoints = EndpointsMap.open(self.pin_dir)
        return self._endpoints

    def _map(self, kind: type[PinnedMap]):  # -> the kind's instance
        self._loaded()
        if kind.NAME not in self._maps:
            self._maps[kind.NAME] = kind.open(self.pin_dir)
        return self._maps[kind.NAME]

    @property
    def ipcache(self) -> IpcacheMap:
        """Identities by prefix (mb_ipcache)."""
        return self._map(IpcacheMap)

    @property
    def policy(self) -> PolicyMap:
        """Policy slots of every local endpoint (mb_policy)."""
        return self._map(PolicyMap)

    @property
    def conntrack(self) -> ConntrackMap:
        """Tracked connections (mb_ct)."""
        return self._map(ConntrackMap)

    @property
    def lb(self) -> LBMaps:
        """Service frontends, backends, reverse NAT, maglev and affinity (mb_lb_*)."""
        self._loaded()
        if self._lb is None:
            self._lb = LBMaps.open(self.pin_dir)
        return self._lb

    @property
    def nat(self) -> NatMap:
        """SNAT tuples of masquerade and NodePort (mb_nat)."""
        return self._map(NatMap)

    @property
    def ipmasq(self) -> IpMasqMap:
        """ip-masq-agent's non-masquerade prefixes (mb_ipmasq_v4)."""
        return self._map(IpMasqMap)

    @property
    def egress(self) -> EgressMap:
        """Egress gateway policy rows (mb_egress_v4)."""
        return self._map(EgressMap)

    @property
    def host_endpoint(self) -> HostEndpointMap:
        """The host firewall's host endpoint (mb_host_ep)."""
        return self._map(HostEndpointMap)

    @property
    def host_config(self) -> HostConfigMap:
        """The node device's settings (mb_host_config)."""
        return self._map(HostConfigMap)

    def metrics(self) -> dict[MetricKey, MetricCounters]:
        """Counters by (reason, direction), summed over CPUs."""
        self._loaded()
        if self._metrics is None:
            self._metrics = MetricsMap.open(self.pin_dir)
        return self._metrics.read()

    def close(self) -> None:
        """Release our fds; pins, maps and attached programs stay in the kernel."""
        for handle in (self._endpoints, self._metrics, self._lb, *self._maps.values(), self._obj, self._host_obj):
            if handle is not None:
                handle.close()
        self._maps.clear()
        self._endpoints = self._metrics = self._lb = self._obj = self._host_obj = None
        self._prog_ids.clear()
        self._host_prog_ids.clear()

    def __enter__(self) -> NodeDatapath:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
