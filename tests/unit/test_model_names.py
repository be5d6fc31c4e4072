"""Name syntaxes: RFC 1123 labels/subdomains, RFC 1035 labels, IANA service names, qualified names."""

from __future__ import annotations

import pytest

from membrane.model import names


@pytest.mark.parametrize("name", ["a", "my-name", "123-abc", "x" * 63])
def test_dns1123_label_valid(name):
    assert names.dns1123_label_error(name) is None


@pytest.mark.parametrize(
    ("name", "why"),
    [("My-Name", "RFC 1123 label"), ("-a", "RFC 1123 label"), ("a-", "RFC 1123 label"), ("a.b", "RFC 1123 label"),
     ("", "RFC 1123 label"), ("x" * 64, "no more than 63 characters")],
)
def test_dns1123_label_invalid(name, why):
    assert why in (names.dns1123_label_error(name) or "")


@pytest.mark.parametrize("name", ["a", "example.com", "deathstar-6fb5694d48-5hmds", "a.b-c.d", "x" * 253])
def test_dns1123_subdomain_valid(name):
    assert names.dns1123_subdomain_error(name) is None


@pytest.mark.parametrize("name", ["Example.com", "a..b", ".a", "a.", "a_b", "x" * 254])
def test_dns1123_subdomain_invalid(name):
    assert names.dns1123_subdomain_error(name) is not None


def test_dns1035_label_must_start_with_a_letter():
    assert names.dns1035_label_error("web-1") is None
    assert "start with an alphabetic character" in (names.dns1035_label_error("1web") or "")


@pytest.mark.parametrize("name", ["http", "dns-tcp", "h2", "a" * 15, "8080a"])
def test_iana_svc_name_valid(name):
    assert names.iana_svc_name_error(name) is None


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("a" * 16, "no more than 15 characters"),
        ("HTTP", "only alpha-numeric characters"),
        ("my_port", "only alpha-numeric characters"),
        ("a--b", "consecutive hyphens"),
        ("8080", "at least one letter"),
        ("-http", "begin or end with a hyphen"),
        ("http-", "begin or end with a hyphen"),
    ],
)
def test_iana_svc_name_invalid(name, why):
    assert why in (names.iana_svc_name_error(name) or "")


def test_qualified_name_prefix_rules():
    assert names.qualified_name_error("kubernetes.io/metadata.name") is None
    assert "prefix part" in (names.qualified_name_error("a_b/c") or "")
