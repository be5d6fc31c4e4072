"""The ctypes mirrors in membrane/datapath/maps must match the C structs in bpf/lib/maps.h.

Compares sizes, member offsets and member sizes against the BTF of the compiled object, read two
independent ways: bpftool's JSON dump and membrane.datapath.bpf.btf. No root needed. The object
is build/bpf/lxc.o (or $MEMBRANE_BPF_DIR), compiled into a temporary directory when missing.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from membrane.datapath.bpf.btf import Member, StructLayout, ctypes_layout, layout_drift, read_struct_layouts
from membrane.datapath.loader import compile_object, find_object, repo_root
from membrane.datapath.maps.abi import MIRRORS, abi_drift
from membrane.datapath.maps.conntrack import ConntrackMap
from membrane.datapath.maps.egress import EgressMap
from membrane.datapath.maps.endpoints import EndpointsMap, LxcMap
from membrane.datapath.maps.events import EVENT_CAPTURE_LEN, EVENT_MIRRORS, ConfigMap, EventStatsMap
from membrane.datapath.maps.ipcache import IpcacheMap
from membrane.datapath.maps.ipmasq import IpMasqMap
from membrane.datapath.maps.lb import AffinityMap, BackendMap, MaglevMap, RevnatMap, ServiceMap
from membrane.datapath.maps.metrics import MetricsMap
from membrane.datapath.maps.nat import NAT_MIRRORS, HostConfigMap, NatMap
from membrane.datapath.maps.policy import PolicyMap
from membrane.datapath.maps.tunnel import TunnelMap

BPFTOOL = shutil.which("bpftool")
CLANG = shutil.which("clang")


@pytest.fixture(scope="module")
def lxc_object(tmp_path_factory: pytest.TempPathFactory) -> str:
    try:
        return find_object("lxc")
    except FileNotFoundError:
        pass
    if CLANG is None:
        pytest.skip("build/bpf/lxc.o is missing and clang is not installed to build it (run `make bpf`)")
    return compile_object("lxc", str(tmp_path_factory.mktemp("bpf")))


def _bpftool_types(path: str) -> dict[int, dict]:
    out = subprocess.run([BPFTOOL, "-j", "btf", "dump", "file", path], capture_output=True, text=True, check=True)
    return {t["id"]: t for t in json.loads(out.stdout)["types"]}


def _bpftool_size(types: dict[int, dict], type_id: int) -> int:
    t = types[type_id]
    if t["kind"] in ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"):
        return _bpftool_size(types, t["type_id"])
    if t["kind"] == "ARRAY":
        return t["nr_elems"] * _bpftool_size(types, t["type_id"])
    return t["size"]


def _bpftool_layouts(path: str) -> dict[str, StructLayout]:
    types = _bpftool_types(path)
    layouts = {}
    for t in types.values():
        if t["kind"] == "STRUCT" and t["name"] != "(anon)":
            members = tuple(
                Member("" if m["name"] == "(anon)" else m["name"], m["bits_offset"] // 8, _bpftool_size(types, m["type_id"]))
                for m in t["members"]
            )
            layouts[t["name"]] = StructLayout(t["name"], t["size"], members)
    return layouts


READERS = {
    "bpftool": _bpftool_layouts,
    "membrane.datapath.bpf.btf": read_struct_layouts,
}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("c_name,mirror", MIRRORS, ids=[name for name, _ in MIRRORS])
def test_mirror_matches_c_struct(lxc_object: str, reader: str, c_name: str, mirror: type) -> None:
    if reader == "bpftool" and BPFTOOL is None:
        pytest.skip("bpftool is not installed; the layout is still checked by the pure-Python BTF reader")
    layouts = READERS[reader](lxc_object)
    assert c_name in layouts, f"struct {c_name} not found in {lxc_object}"
    assert layout_drift(layouts[c_name], ctypes_layout(c_name, mirror)) == []


def test_structs_have_no_implicit_padding(lxc_object: str) -> None:
    """User space writes whole structs and the kernel hashes every key byte: holes would hold
    garbage, so every byte must belong to a named member."""
    layouts = read_struct_layouts(lxc_object)
    for c_name, _mirror in MIRRORS:
        layout = layouts[c_name]
        covered = sum(m.size for m in layout.members)
        assert covered == layout.size, f"struct {c_name}: {layout.size - covered} bytes of implicit padding"


@pytest.mark.skipif(BPFTOOL is None, reason="bpftool is not installed")
def test_python_btf_reader_agrees_with_bpftool(lxc_object: str) -> None:
    assert read_struct_layouts(lxc_object) == _bpftool_layouts(lxc_object)


@pytest.mark.skipif(BPFTOOL is None, reason="bpftool is not installed")
@pytest.mark.parametrize("wrapper", [EndpointsMap, LxcMap, MetricsMap, IpcacheMap, PolicyMap, ConntrackMap, ServiceMap,
                                     BackendMap, RevnatMap, MaglevMap, AffinityMap, NatMap, IpMasqMap,
                                     TunnelMap, EgressMap],
                         ids=lambda w: w.NAME)
def test_map_definitions_use_the_mirrored_structs(lxc_object: str, wrapper: type) -> None:
    """Each map's BTF key/value types are the structs its Python wrapper mirrors."""
    types = _bpftool_types(lxc_object)
    var = next(t for t in types.values() if t["kind"] == "VAR" and t["name"] == wrapper.NAME)
    definition = types[var["type_id"]]
    fields = {m["name"]: types[types[m["type_id"]]["type_id"]] for m in definition["members"]}
    mirrors = dict((mirror, name) for name, mirror in MIRRORS)
    assert fields["key"]["name"] == mirrors[wrapper.KEY]
    assert fields["value"]["name"] == mirrors[wrapper.VALUE]


def test_abi_drift_is_empty_for_the_build(lxc_object: str) -> None:
    assert abi_drift(lxc_object) == []


def test_drift_in_a_mirror_is_reported(lxc_object: str) -> None:
    """A mirror that disagrees with C must be caught (so the tests above can fail)."""

    class WrongInfo(ctypes.Structure):
        _fields_ = [("ifindex", ctypes.c_uint32), ("ep_id", ctypes.c_uint32), ("flags", ctypes.c_uint16)]

    c_layout = read_struct_layouts(lxc_object)["endpoint_info"]
    problems = layout_drift(c_layout, ctypes_layout("endpoint_info", WrongInfo))
    text = "\n".join(problems)
    assert "size is 28 in C, 12 in Python" in text
    assert "endpoint_info.ep_id: offset/size 4/2 in C, 4/4 in Python" in text
    assert "member pod_mac is missing in Python" in text


@pytest.mark.skipif(CLANG is None, reason="clang is not installed")
def test_drift_in_the_c_header_is_reported(tmp_path: Path) -> None:
    """Change a field in a copy of bpf/lib/maps.h, compile it: abi_drift names the struct."""
    source = tmp_path / "bpf"
    shutil.copytree(repo_root() / "bpf", source)
    header = source / "lib" / "maps.h"
    text = header.read_text()
    assert "__u16 flags;" in text
    header.write_text(text.replace("__u16 flags;", "__u32 flags;"))
    obj = compile_object("lxc", str(tmp_path / "out"), source_dir=str(source))
    problems = abi_drift(obj)
    assert any("endpoint_info" in p for p in problems), problems


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("c_name,mirror", EVENT_MIRRORS, ids=[name for name, _ in EVENT_MIRRORS])
def test_event_mirror_matches_c_struct(lxc_object: str, reader: str, c_name: str, mirror: type) -> None:
    """The ring buffer record and the structs of mb_config / mb_event_stats."""
    if reader == "bpftool" and BPFTOOL is None:
        pytest.skip("bpftool is not installed; the layout is still checked by the pure-Python BTF reader")
    layouts = READERS[reader](lxc_object)
    assert c_name in layouts, f"struct {c_name} not found in {lxc_object}"
    layout = layouts[c_name]
    assert layout_drift(layout, ctypes_layout(c_name, mirror)) == []
    assert sum(m.size for m in layout.members) == layout.size, f"struct {c_name}: implicit padding"


def test_the_event_record_ends_with_the_capture_buffer(lxc_object: str) -> None:
    layout = read_struct_layouts(lxc_object)["event_record"]
    data = layout.members[-1]
    assert (data.name, data.size, data.offset + data.size) == ("data", EVENT_CAPTURE_LEN, layout.size)


@pytest.mark.skipif(BPFTOOL is None, reason="bpftool is not installed")
@pytest.mark.parametrize("wrapper", [ConfigMap, EventStatsMap], ids=lambda w: w.NAME)
def test_event_maps_use_the_mirrored_structs(lxc_object: str, wrapper: type) -> None:
    types = _bpftool_types(lxc_object)
    var = next(t for t in types.values() if t["kind"] == "VAR" and t["name"] == wrapper.NAME)
    definition = types[var["type_id"]]
    type_ids = {m["name"]: types[m["type_id"]]["type_id"] for m in definition["members"]}
    assert types[type_ids["value"]]["name"] == dict((mirror, name) for name, mirror in EVENT_MIRRORS)[wrapper.VALUE]
    assert _bpftool_size(types, type_ids["key"]) == ctypes.sizeof(wrapper.KEY)


@pytest.mark.skipif(BPFTOOL is None, reason="bpftool is not installed")
def test_the_host_config_map_uses_the_mirrored_struct(lxc_object: str) -> None:
    types = _bpftool_types(lxc_object)
    var = next(t for t in types.values() if t["kind"] == "VAR" and t["name"] == HostConfigMap.NAME)
    definition = types[var["type_id"]]
    type_ids = {m["name"]: types[m["type_id"]]["type_id"] for m in definition["members"]}
    assert types[type_ids["value"]]["name"] == dict((mirror, name) for name, mirror in NAT_MIRRORS)[HostConfigMap.VALUE]
    assert _bpftool_size(types, type_ids["key"]) == ctypes.sizeof(HostConfigMap.KEY)


@pytest.mark.skipif(CLANG is None, reason="clang is not installed")
def test_abi_drift_is_empty_for_the_host_object(tmp_path: Path) -> None:
    """bpf/host.c shares maps.h: its object must agree with the same mirrors."""
    try:
        obj = find_object("host")
    except FileNotFoundError:
        obj = compile_object("host", str(tmp_path))
    assert abi_drift(obj, present_only=True) == []
    assert {"nat_key", "nat_entry", "host_config", "lb_svc_key", "ct_entry", "ipmasq_key",
            "ipmasq_value"} <= set(read_struct_layouts(obj))


@pytest.mark.skipif(BPFTOOL is None, reason="bpftool is not installed")
def test_the_host_endpoint_map_uses_the_mirrored_struct(lxc_object: str) -> None:
    """mb_host_ep (host firewall): its value is struct host_endpoint, mirrored by HostEndpointValue."""
    from membrane.datapath.maps.host_endpoint import HOST_EP_MIRRORS, HostEndpointMap

    types = _bpftool_types(lxc_object)
    var = next(t for t in types.values() if t["kind"] == "VAR" and t["name"] == HostEndpointMap.NAME)
    definition = types[var["type_id"]]
    type_ids = {m["name"]: types[m["type_id"]]["type_id"] for m in definition["members"]}
    assert types[type_ids["value"]]["name"] == dict((m, n) for n, m in HOST_EP_MIRRORS)[HostEndpointMap.VALUE]
    assert _bpftool_size(types, type_ids["key"]) == ctypes.sizeof(HostEndpointMap.KEY)
