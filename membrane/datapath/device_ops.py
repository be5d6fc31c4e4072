"""Reconciler ops for the devices the node's programs sit on, and their one-entry settings maps.

Two targets, each keyed by device name:

- ``HostDeviceOps``: the underlay device with from_netdev/to_netdev (bpf/host.c) and
  mb_host_config, the settings those programs read (node IP, native-routing CIDR, masquerade,
  host routing, ip-masq-agent). ``update`` writes the settings and attaches both programs;
  ``delete`` detaches them; ``prune`` repairs drift: a program gone from the device (someone ran
  ``tc filter del``) or settings in the map that differ from the row are put back.
- ``OverlayDeviceOps``: the collect-metadata VXLAN device with from_overlay (bpf/overlay.c) and
  mb_tunnel_config, the device from_container encapsulates into. Same three operations.

These are the only writers of mb_host_config and mb_tunnel_config in the agent: the settings are
part of the attachment, so they are written by the step that attaches (as Cilium's loader writes a
device's configuration when it attaches its programs). tc acts on the calling thread's network
namespace: the agent and its reconciler threads run in the node's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from membrane.datapath.maps.nat import HostConfigMap, HostSettings
from membrane.datapath.maps.ops import DatapathUnavailable


@dataclass(frozen=True)
class HostDeviceRow:
    """The host programs on device ``ifindex`` with these settings."""

    ifindex: int
    settings: HostSettings


class HostDeviceTarget(Protocol):
    """What of membrane.datapath.loader.NodeDatapath the ops use."""

    @property
    def host_config(self) -> HostConfigMap: ...
    @property
    def host_program_ids(self) -> dict[str, int]: ...
    def attach_host_device(self, ifindex: int, node_ip: str, native_routing_cidr: str | None = None,
                           masquerade: bool = True, host_routing: bool = False,
                           ip_masq_agent: bool = False) -> None: ...
    def detach_host_device(self, ifindex: int) -> bool: ...
    def host_attached(self, ifindex: int) -> dict[str, int | None]: ...


class HostDeviceOps:
    def __init__(self, target: Callable[[], HostDeviceTarget | None],
                 desired: Callable[[], Mapping[str, HostDeviceRow]]) -> None:
        self._target = target
        self._desired = desired
        self._applied: dict[str, int] = {}  # device name -> ifindex the programs went on

    def _dp(self) -> HostDeviceTarget:
        dp = self._target()
        if dp is None:
            raise DatapathUnavailable("host device: the node datapath is not loaded")
        return dp

    def update(self, name: str, row: HostDeviceRow) -> None:
        s = row.settings
        self._dp().attach_host_device(row.ifindex, s.node_ip, s.native_routing_cidr, masquerade=s.masquerade,
                                      host_routing=s.host_routing, ip_masq_agent=s.ip_masq_agent)
        self._applied[name] = row.ifindex

    def delete(self, name: str) -> None:
        ifindex = self._applied.pop(name, 0)
        if ifindex:
            self._dp().detach_host_device(ifindex)

    def prune(self, keys: set[str]) -> None:
        desired = self._desired()
        for name in keys:
            row = desired.get(name)
            if row is not None and self.drifted(row):
                self.update(name, row)

    def drifted(self, row: HostDeviceRow) -> bool:
        """Is a program missing from the device, another one there, or the settings map different?"""
        dp = self._dp()
        attached = dp.host_attached(row.ifindex)
        ours = dp.host_program_ids
        if not ours or any(attached.get(name) != prog_id for name, prog_id in ours.items()):
            return True
        current = dp.host_config.read()
        return current is None or bytes(current.to_c()) != bytes(row.settings.to_c())


class OverlayTarget(Protocol):
    """What of membrane.datapath.overlay.Overlay the ops use."""

    def attach(self, ifindex: int) -> None: ...
    def detach(self, ifindex: int) -> bool: ...
    def attached(self, ifindex: int) -> int | None: ...
    def config_ifindex(self) -> int: ...


class OverlayDeviceOps:
    def __init__(self, overlay: OverlayTarget, desired: Callable[[], Mapping[str, int]]) -> None:
        self._overlay = overlay
        self._desired = desired
        self._applied: dict[str, int] = {}

    def update(self, name: str, ifindex: int) -> None:
        self._overlay.attach(ifindex)
        self._applied[name] = ifindex

    def delete(self, name: str) -> None:
        ifindex = self._applied.pop(name, 0)
        if ifindex:
            self._overlay.detach(ifindex)

    def prune(self, keys: set[str]) -> None:
        desired = self._desired()
        for name in keys:
            ifindex = desired.get(name)
            if ifindex and (self._overlay.attached(ifindex) is None or self._overlay.config_ifindex() != ifindex):
                self.update(name, ifindex)
