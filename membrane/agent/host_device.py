"""The node device's programs (from-netdev / to-netdev, bpf/host.c) and their settings map
mb_host_config, kept by a one-row desired table and its reconciler (``bpf-host-device``, ops in
membrane.datapath.device_ops): the agent states what it wants once at start, the reconciler attaches,
reports the row's status, and every prune interval puts back a program someone detached or settings
that drifted."""

from __future__ import annotations

from collections.abc import Callable

from membrane.datapath.device_ops import HostDeviceOps, HostDeviceRow, HostDeviceTarget
from membrane.datapath.maps.nat import HostSettings
from membrane.state.reconciler import Reconciler
from membrane.state.table import Table


class HostDevice:
    def __init__(self, datapath: Callable[[], HostDeviceTarget | None]) -> None:
        self.table: Table[str, HostDeviceRow] = Table("host-device")
        self.reconciler: Reconciler[str, HostDeviceRow] = Reconciler(
            self.table, HostDeviceOps(datapath, self.table.items), name="bpf-host-device", prune_interval=60.0)

    def attach(self, name: str, ifindex: int, settings: HostSettings) -> None:
        """The programs on device ``name`` with ``settings``, in the caller's thread (the agent does
        not report ready without them); RuntimeError with the reconciler's message if that failed
        (the reconciler keeps retrying the row)."""
        self.table.upsert(name, HostDeviceRow(ifindex, settings))
        self.reconciler.run_once()
        behind = self.reconciler.not_done([name]).get(name)
        if behind is not None:
            raise RuntimeError(f"host programs on {name}: {behind.message or behind.state}")
