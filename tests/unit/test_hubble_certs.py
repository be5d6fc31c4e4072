"""Hubble's PKI: the CA, the agents' server certificates and the relay's client certificate (names,
validity, key usage, signature), and the lab's files (modes). No root needed."""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from membrane.hubbleserver.certs import (
    DEFAULT_VALIDITY,
    RELAY_CLIENT_NAME,
    CertificateAuthority,
    server_name,
    server_wildcard,
)
from membrane.lab import hubble_certs
from membrane.lab import paths as lab_paths
from membrane.lab.topology import LabNode, LabTopology
from membrane.model.config import ClusterConfig
from membrane.model.errors import ValidationError

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(now=NOW)


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _ext(cert: x509.Certificate, kind: type) -> object:
    return cert.extensions.get_extension_for_class(kind).value


def test_names_follow_cilium() -> None:
    assert server_wildcard("default") == "*.default.hubble-grpc.cilium.io"
    assert server_name("k8s-w1", "default") == "k8s-w1.default.hubble-grpc.cilium.io"
    assert RELAY_CLIENT_NAME == "*.hubble-relay.cilium.io"


def test_ca_is_a_self_signed_ca_that_only_signs(ca: CertificateAuthority) -> None:
    cert = ca.cert
    assert cert.subject == cert.issuer
    cert.verify_directly_issued_by(cert)
    basic = _ext(cert, x509.BasicConstraints)
    assert basic.ca and basic.path_length == 0
    usage = _ext(cert, x509.KeyUsage)
    assert usage.key_cert_sign and usage.crl_sign
    assert cert.not_valid_before_utc <= NOW < cert.not_valid_after_utc
    assert cert.not_valid_after_utc - NOW == DEFAULT_VALIDITY  # 1095 days, Cilium's certValidityDuration


def test_server_certificate_names_usage_and_validity(ca: CertificateAuthority) -> None:
    issued = ca.issue_server(server_wildcard("default"),
                             [server_wildcard("default"), server_name("k8s-w1", "default")],
                             ["192.168.10.101"], now=NOW)
    cert = issued.certificate
    cert.verify_directly_issued_by(ca.cert)
    assert _cn(cert) == "*.default.hubble-grpc.cilium.io"
    sans = _ext(cert, x509.SubjectAlternativeName)
    assert sans.get_values_for_type(x509.DNSName) == ["*.default.hubble-grpc.cilium.io",
                                                      "k8s-w1.default.hubble-grpc.cilium.io"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.168.10.101")]
    assert list(_ext(cert, x509.ExtendedKeyUsage)) == [ExtendedKeyUsageOID.SERVER_AUTH]
    usage = _ext(cert, x509.KeyUsage)
    assert usage.digital_signature and not usage.key_cert_sign
    assert not _ext(cert, x509.BasicConstraints).ca
    assert cert.not_valid_before_utc <= NOW < cert.not_valid_after_utc
    assert b"PRIVATE KEY" in issued.key_pem and b"ENCRYPTED" not in issued.key_pem


def test_client_certificate_is_for_client_auth_only(ca: CertificateAuthority) -> None:
    cert = ca.issue_client(RELAY_CLIENT_NAME, now=NOW).certificate
    cert.verify_directly_issued_by(ca.cert)
    assert _cn(cert) == RELAY_CLIENT_NAME
    assert list(_ext(cert, x509.ExtendedKeyUsage)) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not _ext(cert, x509.BasicConstraints).ca


def test_another_ca_does_not_verify_our_certificates(ca: CertificateAuthority) -> None:
    other = CertificateAuthority.create(now=NOW)
    cert = other.issue_client(RELAY_CLIENT_NAME, now=NOW).certificate
    with pytest.raises(InvalidSignature):  # same CA name, different key
        cert.verify_directly_issued_by(ca.cert)


def test_leaf_never_outlives_its_ca() -> None:
    short = CertificateAuthority.create(validity=datetime.timedelta(days=10), now=NOW)
    cert = short.issue_client("x", validity=datetime.timedelta(days=1000), now=NOW).certificate
    assert cert.not_valid_after_utc == short.cert.not_valid_after_utc


def test_ca_round_trips_through_pem(ca: CertificateAuthority) -> None:
    again = CertificateAuthority.load(ca.cert_pem, ca.key_pem)
    again.issue_client("x", now=NOW).certificate.verify_directly_issued_by(ca.cert)


def test_lab_writes_keys_0600_in_a_0700_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab_paths, "RUN_ROOT", str(tmp_path))
    topo = LabTopology([LabNode("k8s-ctr", "192.168.10.100/24"), LabNode("k8s-w1", "192.168.10.101/24")])
    written = hubble_certs.issue_lab_certs("t1", topo)
    paths = lab_paths.LabPaths("t1")
    assert stat.S_IMODE(os.stat(paths.tls_dir).st_mode) == 0o700
    assert set(written) == {paths.hubble_ca_cert, paths.hubble_ca_key, *paths.hubble_server_pair("k8s-ctr"),
                            *paths.hubble_server_pair("k8s-w1"), *paths.hubble_relay_client_pair}
    for path in written:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == (0o600 if path.endswith(".key") else 0o644), path
    cert = x509.load_pem_x509_certificate(Path(paths.hubble_server_pair("k8s-w1")[0]).read_bytes())
    sans = _ext(cert, x509.SubjectAlternativeName)
    assert "k8s-w1.default.hubble-grpc.cilium.io" in sans.get_values_for_type(x509.DNSName)
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.168.10.101")]
    ca_cert = x509.load_pem_x509_certificate(Path(paths.hubble_ca_cert).read_bytes())
    cert.verify_directly_issued_by(ca_cert)


def test_hubble_tls_is_on_by_default_and_an_explicit_opt_out() -> None:
    config = ClusterConfig()
    assert config.hubble_tls_enabled is True
    config.set("hubble.tls.enabled", "false")
    assert config.hubble_tls_enabled is False
    assert ClusterConfig.from_dict(config.to_dict()).hubble_tls_enabled is False
    with pytest.raises(ValidationError):
        config.set("hubble.tls.enabled", "maybe")
