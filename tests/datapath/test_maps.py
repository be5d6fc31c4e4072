"""Typed map wrappers: endpoints CRUD, per-CPU metrics sums, validation, layout checks."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
from collections.abc import Iterator

import pytest

from membrane.datapath.bpf.bpf_object import BpfObject
from membrane.datapath.bpf.errors import BpfError
from membrane.datapath.bpf.syscalls import prog_test_run
from membrane.datapath.maps.endpoints import EndpointRecord, EndpointsMap, endpoint_key, key_address
from membrane.datapath.maps.metrics import METRIC_INGRESS, MetricsMap
from membrane.datapath.maps.percpu import parse_cpu_list, possible_cpus
from membrane.model.datapath_codes import REASON_FORWARDED
from membrane.model.errors import ValidationError
from tests.datapath.packets import ETH_P_IP, ethernet, icmp_echo, ipv4

REC = EndpointRecord(ifindex=7, ep_id=42, pod_mac="0A:58:0A:C8:00:0A", lxc_mac="0e:00:00:00:00:0a", sec_identity=54400)

# ---- no root needed ------------------------------------------------------------------------------


@pytest.mark.parametrize("text,count", [("0", 1), ("0-1\n", 2), ("0-3,5,7-8", 7), ("2-2", 1)])
def test_parse_cpu_list(text: str, count: int) -> None:
    assert parse_cpu_list(text) == count


@pytest.mark.parametrize("text", ["", "a", "3-1", "0-", "-1"])
def test_parse_cpu_list_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_cpu_list(text)


def test_possible_cpus_reads_the_kernel_file() -> None:
    assert possible_cpus() >= os.cpu_count() >= 1


def test_endpoint_record_normalises_and_round_trips() -> None:
    assert REC.pod_mac == "0a:58:0a:c8:00:0a"
    assert EndpointRecord.from_c(REC.to_c()) == REC
    assert bytes(REC.to_c().pod_mac) == bytes.fromhex("0a580ac8000a")


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"pod_mac": "0a:58:0a"}, "pod_mac '0a:58:0a': not a MAC address"),
        ({"lxc_mac": "zz:00:00:00:00:00"}, "lxc_mac 'zz:00:00:00:00:00': not a MAC address"),
        ({"ifindex": 0}, "ifindex 0: must name a device"),
        ({"ifindex": -1}, "ifindex -1: must be an integer in 0..4294967295"),
        ({"ep_id": 70000}, "ep_id 70000: must be an integer in 0..65535"),
        ({"flags": True}, "flags True: must be an integer"),
    ],
)
def test_endpoint_record_rejects_bad_fields(changes: dict, message: str) -> None:
    fields = {"ifindex": 7, "ep_id": 1, "pod_mac": "0a:00:00:00:00:01", "lxc_mac": "0e:00:00:00:00:01", **changes}
    with pytest.raises(ValidationError) as err:
        EndpointRecord(**fields)
    assert str(err.value).startswith("endpoint record: ")
    assert message in str(err.value)


def test_endpoint_key_is_in_network_order() -> None:
    key = endpoint_key("10.200.0.10")
    assert bytes(key) == bytes([10, 200, 0, 10])
    assert str(key_address(key)) == "10.200.0.10"


@pytest.mark.parametrize("bad", ["10.0.0.256", "fe80::1", "", "10.0.0.0/24"])
def test_endpoint_key_rejects_non_ipv4(bad: str) -> None:
    with pytest.raises(ValidationError, match="endpoints map key: .* is not an IPv4 address"):
        endpoint_key(bad)


# ---- pinned maps ---------------------------------------------------------------------------------


@pytest.fixture
def loaded(pin_dir: str, lxc_object: str) -> Iterator[BpfObject]:
    with BpfObject.open(lxc_object, pin_root=pin_dir) as obj:
        obj.load()
        yield obj


@pytest.mark.root
def test_endpoints_map_crud(loaded: BpfObject, pin_dir: str) -> None:
    with EndpointsMap.open(pin_dir) as endpoints:
        assert endpoints.items() == [] and endpoints.get("10.200.0.10") is None
        endpoints.update("10.200.0.10", REC)
        other = EndpointRecord(ifindex=8, ep_id=43, pod_mac="0a:00:00:00:00:0b", lxc_mac="0e:00:00:00:00:0b")
        endpoints.update("10.200.0.9", other)
        assert endpoints.get("10.200.0.10") == REC
        assert endpoints.items() == [("10.200.0.9", other), ("10.200.0.10", REC)]
        assert endpoints.keys() == ["10.200.0.9", "10.200.0.10"]
        assert endpoints.delete("10.200.0.9") is True
        assert endpoints.delete("10.200.0.9") is False
        assert endpoints.keys() == ["10.200.0.10"]


@pytest.mark.root
def test_bad_input_changes_nothing(loaded: BpfObject, pin_dir: str) -> None:
    with EndpointsMap.open(pin_dir) as endpoints:
        endpoints.update("10.200.0.10", REC)
        with pytest.raises(ValidationError):
            endpoints.update("10.200.0.300", REC)
        with pytest.raises(ValidationError):
            endpoints.update("10.200.0.10", {"ifindex": 1})  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            endpoints.delete("not-an-ip")
        assert endpoints.items() == [("10.200.0.10", REC)]


@pytest.mark.root
def test_opening_a_missing_pin_says_where(pin_dir: str) -> None:
    with pytest.raises(BpfError) as err:
        EndpointsMap.open(pin_dir)
    assert err.value.errno == errno.ENOENT
    assert str(err.value).startswith(f"open pinned object {pin_dir}/mb_endpoints: No such file or directory [ENOENT]")


@pytest.mark.root
def test_a_pinned_map_of_another_layout_is_refused(pin_dir: str) -> None:
    os.makedirs(pin_dir)
    subprocess.run(["bpftool", "map", "create", f"{pin_dir}/mb_endpoints", "type", "hash", "key", "4", "value", "8",
                    "entries", "16", "name", "mb_endpoints"], check=True)
    with pytest.raises(BpfError) as err:
        EndpointsMap.open(pin_dir)
    assert "type/key size/value size are (1, 4, 8), this version expects (1, 4, 28)" in str(err.value)


@pytest.mark.root
def test_metrics_are_summed_over_cpus(loaded: BpfObject, pin_dir: str) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs to put counts in two per-CPU slots")
    frame = ethernet("0a:00:00:00:00:0b", "0e:00:00:00:00:0b", ETH_P_IP, ipv4("10.200.0.10", "10.200.0.11", icmp_echo()))
    prog = loaded.program_fd("to_container")
    runs = {cpus[0]: 3, cpus[1]: 5}
    errors: list[BaseException] = []

    def run_on(cpu: int, times: int) -> None:
        try:
            os.sched_setaffinity(0, {cpu})  # this thread only
            for _ in range(times):
                prog_test_run(prog, frame)
        except BaseException as exc:
            errors.append(exc)

    for cpu, times in runs.items():
        thread = threading.Thread(target=run_on, args=(cpu, times))
        thread.start()
        thread.join()
    assert errors == []
    with MetricsMap.open(pin_dir) as metrics:
        assert metrics.read() == {(REASON_FORWARDED, METRIC_INGRESS): (8, 8 * len(frame))}
