"""Tunnel routing's device side: bpf/overlay.c on the node's collect-metadata VXLAN device, and
mb_tunnel_config telling from_container (bpf/lib/tunnel.h) which device to encapsulate into.

``Overlay(pin_dir).attach(ifindex)`` loads overlay.o against the node's pinned maps (load lxc.o
first, as the agent does), attaches from_overlay at the device's tc ingress and then switches
encapsulation on; ``detach`` switches it off first. tc calls act on the calling thread's netns.
"""

from __future__ import annotations

import errno
import os

from membrane.datapath.bpf.bpf_object import BpfObject
from membrane.datapath.bpf.errors import BpfError
from membrane.datapath.bpf.tc import Direction, tc_attach, tc_detach, tc_hook_create, tc_query
from membrane.datapath.loader import PROGS_SUBDIR, TC_HANDLE, TC_PRIORITY, find_object
from membrane.datapath.maps.abi import abi_drift
from membrane.datapath.maps.tunnel import TunnelConfigMap, TunnelMap

OVERLAY_OBJECT = "overlay.o"
FROM_OVERLAY = "from_overlay"  # tc ingress of the VXLAN device: decapsulated packets


class Overlay:
    def __init__(self, pin_dir: str, object_path: str | None = None) -> None:
        self.pin_dir = pin_dir
        self._object_path = object_path
        self._obj: BpfObject | None = None

    def _load(self) -> BpfObject:
        if self._obj is not None:
            return self._obj
        path = self._object_path or find_object(OVERLAY_OBJECT)
        drift = abi_drift(path, present_only=True)
        if drift:
            raise BpfError(errno.EPROTO, f"{path}: map layouts differ from membrane/datapath/maps", "\n".join(drift))
        obj = BpfObject.open(path, pin_root=self.pin_dir)
        try:
            obj.load()
            obj.pin_program(FROM_OVERLAY, os.path.join(self.pin_dir, PROGS_SUBDIR, FROM_OVERLAY))
        except BaseException:
            obj.close()
            raise
        self._obj = obj
        return obj

    def attach(self, ifindex: int) -> None:
        obj = self._load()
        tc_hook_create(ifindex)
        tc_attach(ifindex, Direction.INGRESS, obj.program_fd(FROM_OVERLAY), handle=TC_HANDLE, priority=TC_PRIORITY,
                  replace=True)
        with TunnelConfigMap.open(self.pin_dir) as config:
            config.write(ifindex)

    def detach(self, ifindex: int) -> bool:
        """Encapsulation off, then the program off the device; False if none was attached."""
        with TunnelConfigMap.open(self.pin_dir) as config:
            config.write(0)
        return tc_detach(ifindex, Direction.INGRESS, TC_HANDLE, TC_PRIORITY)

    def attached(self, ifindex: int) -> int | None:
        return tc_query(ifindex, Direction.INGRESS, TC_HANDLE, TC_PRIORITY)

    def config_ifindex(self) -> int:
        """The device from_container encapsulates into (mb_tunnel_config), 0 when none."""
        with TunnelConfigMap.open(self.pin_dir) as config:
            return config.read()

    def tunnels(self) -> TunnelMap:
        return TunnelMap.open(self.pin_dir)

    def close(self) -> None:
        if self._obj is not None:
            self._obj.close()
            self._obj = None
