"""The pure CNI helpers: ADD result shapes per version, CNI_ARGS parsing, version checks."""

from __future__ import annotations

import pytest

from membrane.api.cni_args import check_known_args, parse_cni_args
from membrane.api.cni_errors import CNIError
from membrane.api.cni_result import build_add_result
from membrane.api.cni_versions import check_version

NETNS = "/run/netns/lab-pod"


def make(version: str = "1.0.0", **overrides):
    kwargs = dict(cni_version=version, ifname="eth0", host_ifname="lxc12ab", host_mac="0A:00:00:00:00:01",
                  pod_mac="0a:00:00:00:00:02", netns=NETNS, ip="10.0.1.23", prefixlen=32, gateway="10.0.1.1")
    kwargs.update(overrides)
    return build_add_result(**kwargs)


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_result_1x_shape(version):
    assert make(version) == {
        "cniVersion": version,
        "interfaces": [
            {"name": "lxc12ab", "mac": "0a:00:00:00:00:01"},
            {"name": "eth0", "mac": "0a:00:00:00:00:02", "sandbox": NETNS},
        ],
        "ips": [{"interface": 1, "address": "10.0.1.23/32", "gateway": "10.0.1.1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.1.1"}],
        "dns": {},
    }


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_result_downgraded_for_old_versions(version):
    result = make(version)
    assert result["cniVersion"] == version
    assert result["ips"] == [{"version": "4", "interface": 1, "address": "10.0.1.23/32", "gateway": "10.0.1.1"}]
    assert result["interfaces"][1]["sandbox"] == NETNS


def test_result_ipv6():
    result = make("0.4.0", ip="fd00::17", prefixlen=128, gateway="fd00::1")
    assert result["ips"][0]["version"] == "6"
    assert result["ips"][0]["address"] == "fd00::17/128"
    assert result["routes"] == [{"dst": "::/0", "gw": "fd00::1"}]


@pytest.mark.parametrize(
    "overrides,fragment",
    [
        ({"version": "0.2.0"}, "cniVersion '0.2.0'"),
        ({"ifname": ""}, "ifname ''"),
        ({"host_ifname": "lxc-way-too-long-name"}, "host_ifname"),
        ({"host_mac": "zz:00:00:00:00:01"}, "host_mac"),
        ({"pod_mac": "0a:00:00:00:00"}, "pod_mac"),
        ({"netns": ""}, "netns"),
        ({"ip": "10.0.1.300"}, "ip '10.0.1.300'"),
        ({"gateway": "fd00::1"}, "gateway fd00::1: IPv6"),
        ({"prefixlen": 33}, "prefixlen 33"),
        ({"prefixlen": True}, "prefixlen True"),
    ],
)
def test_result_rejects_bad_input(overrides, fragment):
    version = overrides.pop("version", "1.0.0")
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        make(version, **overrides)


def test_parse_cni_args():
    assert parse_cni_args("") == {}
    assert parse_cni_args("K8S_POD_NAMESPACE=default;K8S_POD_NAME=x;IgnoreUnknown=1;") == {
        "K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "x", "IgnoreUnknown": "1"}
    assert parse_cni_args("A=") == {"A": ""}


@pytest.mark.parametrize(
    "raw,fragment",
    [("A", "pair 1 'A': expected exactly one '='"), ("A=1;B=2=3", "pair 2 'B=2=3'"),
     ("=1", "empty key"), ("A=1;A=2", "given twice")],
)
def test_parse_cni_args_errors(raw, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_cni_args(raw)


def test_unknown_args_need_ignore_unknown():
    check_known_args({"K8S_POD_NAME": "x"})
    check_known_args({"FOO": "1", "IgnoreUnknown": "true"})
    with pytest.raises(ValueError, match=r"unknown args \['FOO'\]"):
        check_known_args({"FOO": "1"})
    with pytest.raises(ValueError, match=r"unknown args"):
        check_known_args({"FOO": "1", "IgnoreUnknown": "0"})


def test_check_version():
    check_version("ADD", "0.3.0")
    check_version("GC", "1.1.0")
    with pytest.raises(CNIError) as info:
        check_version("ADD", "0.2.0")
    assert info.value.code == 1
    with pytest.raises(CNIError) as info:
        check_version("CHECK", "x.y")
    assert info.value.code == 6
