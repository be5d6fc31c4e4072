"""The device reconcilers: the host programs and the overlay program are attached through their
rows, a failed attach shows as the row's error and is retried, and prune puts back a program that
was detached or settings that drifted (fake targets: no root)."""

from __future__ import annotations

from membrane.datapath.device_ops import HostDeviceOps, HostDeviceRow, OverlayDeviceOps
from membrane.datapath.maps.nat import HostSettings
from membrane.state.reconciler import DONE, ERROR, Reconciler
from membrane.state.table import Table


class FakeHostConfig:
    def __init__(self) -> None:
        self.value: HostSettings | None = None

    def read(self) -> HostSettings | None:
        return self.value


class FakeHostDatapath:
    """Programs 11 and 12 go on a device; ``fail`` makes the next attaches raise."""

    def __init__(self) -> None:
        self.host_config = FakeHostConfig()
        self.host_program_ids: dict[str, int] = {}
        self.on_device: dict[int, dict[str, int | None]] = {}
        self.attaches = 0
        self.fail = False

    def attach_host_device(self, ifindex: int, node_ip: str, native_routing_cidr: str | None = None,
                           masquerade: bool = True, host_routing: bool = False,
                           ip_masq_agent: bool = False) -> None:
        if self.fail:
            raise OSError("tc: Operation not permitted")
        self.attaches += 1
        self.host_config.value = HostSettings(node_ip, native_routing_cidr, masquerade, host_routing, ip_masq_agent)
        self.host_program_ids = {"from_netdev": 11, "to_netdev": 12}
        self.on_device[ifindex] = dict(self.host_program_ids)

    def detach_host_device(self, ifindex: int) -> bool:
        return self.on_device.pop(ifindex, None) is not None

    def host_attached(self, ifindex: int) -> dict[str, int | None]:
        return self.on_device.get(ifindex, {"from_netdev": None, "to_netdev": None})


SETTINGS = HostSettings("192.168.10.2", "10.0.0.0/8", masquerade=True, host_routing=True)


now = [1000.0]  # the reconcilers' clock, moved by the tests


def _host(dp: FakeHostDatapath) -> tuple[Table[str, HostDeviceRow], Reconciler[str, HostDeviceRow]]:
    table: Table[str, HostDeviceRow] = Table("host-device")
    rec = Reconciler(table, HostDeviceOps(lambda: dp, table.items), name="bpf-host-device", prune_interval=600.0,
                     clock=lambda: now[0])
    return table, rec


def test_the_row_attaches_the_programs_with_its_settings() -> None:
    dp = FakeHostDatapath()
    table, rec = _host(dp)
    table.upsert("eth1", HostDeviceRow(4, SETTINGS))
    rec.run_once()
    assert rec.status("eth1").state == DONE
    assert dp.on_device[4] == {"from_netdev": 11, "to_netdev": 12} and dp.host_config.value == SETTINGS


def test_a_failed_attach_is_the_rows_error_and_is_retried_until_it_works() -> None:
    dp = FakeHostDatapath()
    dp.fail = True
    table, rec = _host(dp)
    table.upsert("eth1", HostDeviceRow(4, SETTINGS))
    rec.run_once()
    status = rec.status("eth1")
    assert status.state == ERROR and "Operation not permitted" in status.message
    dp.fail = False
    now[0] += 3600.0  # past any backoff
    rec.run_once()
    assert rec.status("eth1").state == DONE and dp.on_device[4]


def test_prune_puts_back_a_detached_program_and_drifted_settings() -> None:
    dp = FakeHostDatapath()
    table, rec = _host(dp)
    table.upsert("eth1", HostDeviceRow(4, SETTINGS))
    rec.run_once()
    ops = HostDeviceOps(lambda: dp, table.items)
    assert not ops.drifted(table.get("eth1"))
    dp.on_device[4]["to_netdev"] = None  # `tc filter del dev eth1 egress`
    assert ops.drifted(table.get("eth1"))
    ops.prune({"eth1"})
    assert dp.on_device[4]["to_netdev"] == 12
    dp.host_config.value = HostSettings("192.168.10.2", "10.0.0.0/8", masquerade=False, host_routing=True)
    assert ops.drifted(table.get("eth1"))
    before = dp.attaches
    ops.prune({"eth1"})
    assert dp.host_config.value == SETTINGS and dp.attaches == before + 1
    ops.prune({"eth1"})
    assert dp.attaches == before + 1  # nothing drifted: nothing written


def test_deleting_the_row_detaches() -> None:
    dp = FakeHostDatapath()
    table, rec = _host(dp)
    table.upsert("eth1", HostDeviceRow(4, SETTINGS))
    rec.run_once()
    table.delete("eth1")
    rec.run_once()
    assert 4 not in dp.on_device


class FakeOverlay:
    def __init__(self) -> None:
        self.prog: dict[int, int] = {}
        self.config = 0

    def attach(self, ifindex: int) -> None:
        self.prog[ifindex] = 21
        self.config = ifindex

    def detach(self, ifindex: int) -> bool:
        self.config = 0
        return self.prog.pop(ifindex, None) is not None

    def attached(self, ifindex: int) -> int | None:
        return self.prog.get(ifindex)

    def config_ifindex(self) -> int:
        return self.config


def test_the_overlay_device_is_attached_repaired_and_detached() -> None:
    overlay = FakeOverlay()
    table: Table[str, int] = Table("tunnel-device")
    rec = Reconciler(table, OverlayDeviceOps(overlay, table.items), name="bpf-tunnel-device")
    table.upsert("cilium_vxlan", 7)
    rec.run_once()
    assert overlay.prog == {7: 21} and overlay.config == 7
    ops = OverlayDeviceOps(overlay, table.items)
    overlay.config = 0  # encapsulation switched off behind the agent's back
    ops.prune({"cilium_vxlan"})
    assert overlay.config == 7
    del overlay.prog[7]
    ops.prune({"cilium_vxlan"})
    assert overlay.prog == {7: 21}
    table.delete("cilium_vxlan")
    rec.run_once()
    assert overlay.prog == {} and overlay.config == 0
