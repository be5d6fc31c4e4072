"""Hubble's certificates: a CA that issues agent server certificates and the relay's client certificate.

The names are Cilium's (``hubble.tls.auto``): every agent serves ``*.<cluster>.hubble-grpc.cilium.io``
and the relay dials a node as ``<node>.<cluster>.hubble-grpc.cilium.io``; the relay authenticates with a
client certificate for ``*.hubble-relay.cilium.io``. Validity defaults to Cilium's
``certValidityDuration`` (1095 days). Keys are ECDSA P-256. Issuing is pure (bytes in, bytes out);
writing files is the lab's business.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_COMMON_NAME = "hubble-ca.cilium.io"
RELAY_CLIENT_NAME = "*.hubble-relay.cilium.io"
HUBBLE_GRPC_DOMAIN = "hubble-grpc.cilium.io"
DEFAULT_VALIDITY = datetime.timedelta(days=1095)
_BACKDATE = datetime.timedelta(minutes=5)  # tolerate small clock differences between processes


def server_wildcard(cluster: str) -> str:
    """The name every agent's server certificate carries: ``*.<cluster>.hubble-grpc.cilium.io``."""
    return f"*.{cluster}.{HUBBLE_GRPC_DOMAIN}"


def server_name(node: str, cluster: str) -> str:
    """The TLS name a client verifies when it dials one node's Hubble server (as Hubble's relay does)."""
    return f"{node}.{cluster}.{HUBBLE_GRPC_DOMAIN}"


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, PEM-encoded (the key unencrypted, PKCS#8)."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now(now: datetime.datetime | None) -> datetime.datetime:
    return now if now is not None else datetime.datetime.now(datetime.UTC)


class CertificateAuthority:
    """A self-signed CA (``ca.crt`` / ``ca.key``) that signs Hubble's leaf certificates."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert = cert
        self.key = key

    @classmethod
    def create(cls, common_name: str = CA_COMMON_NAME, validity: datetime.timedelta = DEFAULT_VALIDITY,
               now: datetime.datetime | None = None) -> CertificateAuthority:
        key = _new_key()
        start = _now(now) - _BACKDATE
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + _BACKDATE + validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes) -> CertificateAuthority:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the CA key is not an ECDSA key")
        return cls(x509.load_pem_x509_certificate(cert_pem), key)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    def issue_server(self, common_name: str, dns_names: Sequence[str], ip_addresses: Sequence[str] = (), *,
                     validity: datetime.timedelta = DEFAULT_VALIDITY,
                     now: datetime.datetime | None = None) -> Issued:
        """A TLS server certificate (serverAuth) for the given DNS names and IP addresses."""
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        return self._issue(common_name, sans, ExtendedKeyUsageOID.SERVER_AUTH, validity, now)

    def issue_client(self, common_name: str, *, validity: datetime.timedelta = DEFAULT_VALIDITY,
                     now: datetime.datetime | None = None) -> Issued:
        """A TLS client certificate (clientAuth) naming ``common_name``."""
        return self._issue(common_name, [x509.DNSName(common_name)], ExtendedKeyUsageOID.CLIENT_AUTH, validity, now)

    def _issue(self, common_name: str, sans: list[x509.GeneralName], usage: x509.ObjectIdentifier,
               validity: datetime.timedelta, now: datetime.datetime | None) -> Issued:
        key = _new_key()
        start = _now(now) - _BACKDATE
        end = min(start + _BACKDATE + validity, self.cert.not_valid_after_utc)  # never outlive the CA
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))
