"""``membrane dbg config``: cilium-dbg config's layout over an agent's configuration."""

from __future__ import annotations

from membrane.cli.dbg_config import render
from membrane.model.config import ClusterConfig


def test_read_write_only_by_default() -> None:
    text = render(ClusterConfig(debug=True).to_dict(), show_all=False)
    assert text == ("##### Read-write configurations #####\n"
                    "Debug                             : Enabled\n"
                    "PolicyEnforcement                 : default\n")


def test_all_lists_read_only_options_sorted_first() -> None:
    lines = render(ClusterConfig(ipam_mode="kubernetes").to_dict(), show_all=True).splitlines()
    assert lines[0] == "#### Read-only configurations ####"
    split = lines.index("##### Read-write configurations #####")
    names = [line.split(":")[0].rstrip() for line in lines[1:split]]
    assert names == sorted(names)
    assert "EnableL2Announcements             : false" in lines
    assert "IPAM                              : kubernetes" in lines
    assert "KubeProxyReplacement              : true" in lines


def test_read_only_flag() -> None:
    text = render(ClusterConfig().to_dict(), show_all=False, read_only=True)
    assert text.startswith("#### Read-only configurations ####\n") and "Read-write" not in text
