"""The C structs (bpf/lib/maps.h) each ctypes mirror stands for, and the check that they agree."""

from __future__ import annotations

import ctypes

from membrane.datapath.bpf.btf import ctypes_layout, layout_drift, read_struct_layouts
from membrane.datapath.maps.conntrack import CtEntry, CtKey
from membrane.datapath.maps.egress import EGRESS_MIRRORS
from membrane.datapath.maps.endpoints import EndpointInfo, EndpointKey, LxcInfo, LxcKey
from membrane.datapath.maps.events import EVENT_MIRRORS
from membrane.datapath.maps.host_endpoint import HOST_EP_MIRRORS
from membrane.datapath.maps.ipcache import IpcacheKey, IpcacheValue
from membrane.datapath.maps.ipmasq import IPMASQ_MIRRORS
from membrane.datapath.maps.lb import LB_MIRRORS
from membrane.datapath.maps.metrics import MetricsKey, MetricsValue
from membrane.datapath.maps.nat import NAT_MIRRORS
from membrane.datapath.maps.policy import PolicyKey, PolicyValue
from membrane.datapath.maps.sock_lb import SOCK_LB_MIRRORS
from membrane.datapath.maps.tunnel import TUNNEL_MIRRORS

# (C struct name, Python mirror) for every struct shared with user space
MIRRORS: tuple[tuple[str, type[ctypes.Structure]], ...] = (
    ("endpoint_key", EndpointKey),
    ("endpoint_info", EndpointInfo),
    ("lxc_key", LxcKey),
    ("lxc_info", LxcInfo),
    ("metrics_key", MetricsKey),
    ("metrics_value", MetricsValue),
    ("ipcache_key", IpcacheKey),
    ("ipcache_value", IpcacheValue),
    ("policy_key", PolicyKey),
    ("policy_entry", PolicyValue),
    ("ct_key", CtKey),
    ("ct_entry", CtEntry),
    *EVENT_MIRRORS,
    *LB_MIRRORS,
    *NAT_MIRRORS,
    *IPMASQ_MIRRORS,
    *EGRESS_MIRRORS,
    *TUNNEL_MIRRORS,
    *HOST_EP_MIRRORS,
)


def abi_drift(object_path: str, present_only: bool = False) -> list[str]:
    """Every difference between the object's BTF and the mirrors; empty when they agree. With
    ``present_only``, structs the object does not use (e.g. host.o has no event records) are
    skipped rather than reported missing."""
    layouts = read_struct_layouts(object_path)
    problems = []
    for c_name, mirror in MIRRORS:
        if c_name not in layouts:
            if present_only:
                continue
            problems.append(f"struct {c_name}: not in {object_path}")
            continue
        problems.extend(layout_drift(layouts[c_name], ctypes_layout(c_name, mirror)))
    return problems


def sock_abi_drift(object_path: str) -> list[str]:
    """As :func:`abi_drift` for bpf/sock.c: its own structs (SOCK_LB_MIRRORS) must all be there,
    the shared ones it uses must agree."""
    layouts = read_struct_layouts(object_path)
    problems = abi_drift(object_path, present_only=True)
    for c_name, mirror in SOCK_LB_MIRRORS:
        if c_name not in layouts:
            problems.append(f"struct {c_name}: not in {object_path}")
            continue
        problems.extend(layout_drift(layouts[c_name], ctypes_layout(c_name, mirror)))
    return problems
