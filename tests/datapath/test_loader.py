"""NodeDatapath: loading, pins (created, reused, refused, removed), object lookup, errors."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess

import pytest

from membrane.datapath.bpf.bpf_object import BpfObject
from membrane.datapath.bpf.errors import BpfError
from membrane.datapath.bpf.syscalls import close_fd, map_info, obj_get
from membrane.datapath.loader import (
    BPF_DIR_ENV,
    FROM_CONTAINER,
    PROGS_SUBDIR,
    TO_CONTAINER,
    NodeDatapath,
    compile_object,
    find_object,
    remove_pins,
    repo_root,
)
from membrane.datapath.maps.endpoints import EndpointRecord

REC = EndpointRecord(ifindex=7, ep_id=42, pod_mac="0a:00:00:00:00:0a", lxc_mac="0e:00:00:00:00:0a")


def test_find_object_uses_the_env_directory(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lxc.o").write_bytes(b"")
    monkeypatch.setenv(BPF_DIR_ENV, str(tmp_path))
    assert find_object("lxc") == str(tmp_path / "lxc.o")
    assert find_object("lxc.o") == str(tmp_path / "lxc.o")
    with pytest.raises(FileNotFoundError, match=r"BPF object host.o not found in .*MEMBRANE_BPF_DIR"):
        find_object("host")
    with pytest.raises(ValueError, match="a bare name"):
        find_object("../lxc")


def test_bpf_error_reads_well() -> None:
    err = BpfError(errno.ENOENT, "open pinned object /sys/fs/bpf/x", "hint")
    assert str(err) == "open pinned object /sys/fs/bpf/x: No such file or directory [ENOENT]\nhint"
    assert isinstance(err, OSError) and err.errno == errno.ENOENT


def _map_ids(pin_dir: str) -> dict[str, int]:
    ids = {}
    for name in ("mb_endpoints", "mb_metrics", "mb_ipcache", "mb_policy", "mb_ct"):
        fd = obj_get(f"{pin_dir}/{name}")
        try:
            ids[name] = map_info(fd).id
        finally:
            close_fd(fd)
    return ids


@pytest.mark.root
def test_load_pins_maps_and_programs(pin_dir: str, lxc_object: str) -> None:
    with NodeDatapath(pin_dir, object_path=lxc_object) as dp:
        dp.load()
        assert sorted(os.listdir(pin_dir)) == ["mb_config", "mb_ct", "mb_egress_v4", "mb_endpoints", "mb_event_stats", "mb_events",
                                               "mb_host_config", "mb_host_ep", "mb_ipcache", "mb_ipmasq_v4", "mb_lb_affinity",
                                               "mb_lb_be", "mb_lb_maglev", "mb_lb_revnat", "mb_lb_svc", "mb_lxc",
                                               "mb_metrics", "mb_nat", "mb_policy", "mb_tunnel", "mb_tunnel_config",
                                               PROGS_SUBDIR]
        assert sorted(os.listdir(f"{pin_dir}/{PROGS_SUBDIR}")) == [FROM_CONTAINER, TO_CONTAINER]
        assert set(dp.program_ids) == {FROM_CONTAINER, TO_CONTAINER}
        with pytest.raises(BpfError, match="already loaded"):
            dp.load()


@pytest.mark.root
def test_a_reload_reuses_pinned_maps_and_their_contents(pin_dir: str, lxc_object: str) -> None:
    first = NodeDatapath(pin_dir, object_path=lxc_object)
    first.load()
    first.endpoints.update("10.200.0.10", REC)
    ids = _map_ids(pin_dir)
    old_programs = first.program_ids
    first.close()  # the agent stops; pins keep the maps

    with NodeDatapath(pin_dir, object_path=lxc_object) as second:
        second.load()
        assert _map_ids(pin_dir) == ids
        assert second.endpoints.items() == [("10.200.0.10", REC)]
        assert second.program_ids != old_programs


@pytest.mark.root
def test_an_incompatible_pinned_map_fails_the_load(pin_dir: str, lxc_object: str, caplog) -> None:
    os.makedirs(pin_dir)
    subprocess.run(["bpftool", "map", "create", f"{pin_dir}/mb_metrics", "type", "hash", "key", "8", "value", "16",
                    "entries", "1024", "name", "mb_metrics"], check=True)
    dp = NodeDatapath(pin_dir, object_path=lxc_object)
    with pytest.raises(BpfError) as err:
        dp.load()
    assert err.value.errno == errno.EINVAL
    assert str(err.value).startswith(f"load BPF object {lxc_object}: Invalid argument")
    assert not dp.loaded
    assert sorted(os.listdir(pin_dir)) == ["mb_metrics"]  # nothing new was pinned
    # libbpf's own explanation reaches the log (not stderr)
    assert any(r.name == "membrane.libbpf" and "couldn't reuse pinned map" in r.getMessage() for r in caplog.records)


@pytest.mark.root
def test_a_verifier_rejection_carries_the_log(tmp_path, pin_dir: str) -> None:
    source = tmp_path / "bad.c"
    source.write_text(
        '#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n'
        'SEC("tc") int bad(struct __sk_buff *skb) { return *(int *)(long)skb->data; }\n'
        'char _license[] SEC("license") = "GPL";\n'
    )
    obj_path = tmp_path / "bad.o"
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", "-I", "/usr/include/x86_64-linux-gnu", "-c",
                    str(source), "-o", str(obj_path)], check=True)
    with BpfObject.open(str(obj_path), pin_root=pin_dir) as obj, pytest.raises(BpfError) as err:
        obj.load()
    assert "verifier log (tail):" in str(err.value)
    assert "invalid access to packet" in str(err.value)


@pytest.mark.root
def test_a_missing_object_or_program_says_what(pin_dir: str, lxc_object: str, tmp_path) -> None:
    with pytest.raises(BpfError, match=r"open BPF object .*/nope.o: No such file"):
        BpfObject.open(str(tmp_path / "nope.o"))
    with BpfObject.open(lxc_object, pin_root=pin_dir) as obj:
        with pytest.raises(BpfError, match="(?s)program 'nope'.*programs here: from_container, to_container"):
            obj.program_fd("nope")
        with pytest.raises(BpfError, match="not loaded|loaded\\?"):
            obj.program_fd(FROM_CONTAINER)


@pytest.mark.root
def test_remove_pins(pin_dir: str, lxc_object: str) -> None:
    with NodeDatapath(pin_dir, object_path=lxc_object) as dp:
        dp.load()
    assert remove_pins(pin_dir) is True
    assert not os.path.exists(pin_dir)
    assert remove_pins(pin_dir) is False


def test_remove_pins_refuses_paths_outside_bpffs(tmp_path) -> None:
    (tmp_path / "keep").write_text("x")
    with pytest.raises(BpfError, match="not below a mounted bpf filesystem"):
        remove_pins(str(tmp_path))
    with pytest.raises(BpfError, match="not below a mounted bpf filesystem"):
        remove_pins("/sys/fs/bpf")
    assert (tmp_path / "keep").exists()


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang is not installed")
def test_an_object_whose_structs_drifted_is_refused_before_loading(tmp_path, run_id: str) -> None:
    source = tmp_path / "bpf"
    shutil.copytree(repo_root() / "bpf", source)
    header = source / "lib" / "maps.h"
    header.write_text(header.read_text().replace("__u32 sec_identity;", "__u64 sec_identity;"))
    obj = compile_object("lxc", str(tmp_path / "out"), source_dir=str(source))
    pin_dir = f"/sys/fs/bpf/membrane/dpt-{run_id}/node"
    dp = NodeDatapath(pin_dir, object_path=obj)
    with pytest.raises(BpfError) as err:
        dp.load()
    assert err.value.errno == errno.EPROTO
    assert "struct endpoint_info" in str(err.value)
    assert not os.path.exists(pin_dir)  # refused before anything was created
