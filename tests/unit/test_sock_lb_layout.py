"""The socket LB's ctypes mirrors (membrane/datapath/maps/sock_lb.py) match bpf/lib/sock_lb.h, read
from the BTF of build/bpf/sock.o (compiled into a temporary directory when missing). No root."""

from __future__ import annotations

import ctypes

import pytest

from membrane.datapath.bpf.btf import ctypes_layout, layout_drift, read_struct_layouts
from membrane.datapath.loader import compile_object, find_object
from membrane.datapath.maps.abi import sock_abi_drift
from membrane.datapath.maps.sock_lb import SOCK_LB_MIRRORS


@pytest.fixture(scope="module")
def sock_object(tmp_path_factory: pytest.TempPathFactory) -> str:
    try:
        return find_object("sock")
    except FileNotFoundError:
        return compile_object("sock", str(tmp_path_factory.mktemp("bpf")))


@pytest.mark.parametrize("c_name,mirror", SOCK_LB_MIRRORS, ids=[name for name, _ in SOCK_LB_MIRRORS])
def test_mirror_matches_c_struct(sock_object: str, c_name: str, mirror: type) -> None:
    layouts = read_struct_layouts(sock_object)
    assert c_name in layouts
    assert layout_drift(layouts[c_name], ctypes_layout(c_name, mirror)) == []
    covered = sum(m.size for m in layouts[c_name].members)
    assert covered == layouts[c_name].size, f"struct {c_name} has implicit padding"


def test_sock_abi_drift_is_empty_for_the_build(sock_object: str) -> None:
    assert sock_abi_drift(sock_object) == []


def test_a_wrong_mirror_is_reported(sock_object: str) -> None:
    class Wrong(ctypes.Structure):
        _fields_ = [("cookie", ctypes.c_uint32), ("address", ctypes.c_uint32)]

    problems = layout_drift(read_struct_layouts(sock_object)["lb_rev_sk_key"], ctypes_layout("lb_rev_sk_key", Wrong))
    assert any("size is 16 in C, 8 in Python" in p for p in problems)
