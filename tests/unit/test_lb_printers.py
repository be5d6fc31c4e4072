"""kubectl tables for Endpoints and EndpointSlices (``membrane get ep,endpointslices``)."""

from __future__ import annotations

from datetime import UTC, datetime

from membrane.cli.printers import render_table
from membrane.model.kinds import lookup_kind

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
META = {"namespace": "default", "creationTimestamp": "2024-05-01T11:59:55Z"}


def test_kinds_are_registered_read_only():
    assert lookup_kind("ep").kind == "Endpoints" and lookup_kind("endpoints").read_only
    info = lookup_kind("endpointslices")
    assert (info.kind, info.group, info.api_version, info.read_only) == (
        "EndpointSlice", "discovery.k8s.io", "discovery.k8s.io/v1", True)
    assert lookup_kind("endpointslices.discovery.k8s.io").kind == "EndpointSlice"


def test_endpoints_table():
    eps = [
        {"metadata": {"name": "web", **META},
         "subsets": [{"addresses": [{"ip": "10.0.1.2"}, {"ip": "10.0.2.3"}],
                      "notReadyAddresses": [{"ip": "10.0.1.9"}], "ports": [{"port": 80}]}]},
        {"metadata": {"name": "empty", **META}, "subsets": []},
        {"metadata": {"name": "many", **META},
         "subsets": [{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 4)], "ports": [{"port": 80}, {"port": 443}]}]},
    ]
    assert render_table("ep", eps, wide=False, all_namespaces=False, now=NOW).splitlines() == [
        "NAME    ENDPOINTS                                         AGE",
        "web     10.0.1.2:80,10.0.2.3:80                           5s",
        "empty   <none>                                            5s",
        "many    10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 3 more...   5s",
    ]


def test_endpointslices_table():
    slices = [
        {"metadata": {"name": "web-abcde", **META}, "addressType": "IPv4",
         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
         "endpoints": [{"addresses": ["10.0.1.2"]}, {"addresses": ["10.0.2.3"]}]},
        {"metadata": {"name": "none-12345", **META}, "addressType": "IPv4", "ports": [], "endpoints": []},
    ]
    assert render_table("EndpointSlice", slices, wide=False, all_namespaces=True, now=NOW).splitlines() == [
        "NAMESPACE   NAME         ADDRESSTYPE   PORTS     ENDPOINTS           AGE",
        "default     web-abcde    IPv4          8080      10.0.1.2,10.0.2.3   5s",
        "default     none-12345   IPv4          <unset>   <unset>             5s",
    ]
