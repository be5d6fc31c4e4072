"""The lab's Hubble PKI, written at ``lab create`` like Cilium's ``hubble.tls.auto``: one CA, a server
certificate per agent and the relay's client certificate, under ``/run/membrane/<lab>/tls/``.

The directory is 0700 and every key 0600 (root only); certificates are 0644. ``lab delete`` removes
the run directory and so all of it. Nothing is written when ``hubble.tls.enabled=false``.
"""

from __future__ import annotations

import os

from membrane.hubbleserver.certs import RELAY_CLIENT_NAME, CertificateAuthority, server_name, server_wildcard
from membrane.lab.paths import LabPaths
from membrane.lab.topology import LabTopology

KEY_MODE = 0o600
CERT_MODE = 0o644
DIR_MODE = 0o700


def _write(path: str, data: bytes, mode: int) -> None:
    """Write atomically, created with ``mode`` from the start (a key is never readable by others)."""
    tmp = f"{path}.tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)  # O_CREAT's mode passes through the umask
    os.replace(tmp, path)


def issue_lab_certs(lab: str, topo: LabTopology) -> list[str]:
    """Issue the lab's CA and certificates; returns the files written."""
    paths = LabPaths(lab)
    cluster = topo.config.cluster_name
    os.makedirs(paths.tls_dir, mode=DIR_MODE, exist_ok=True)
    os.chmod(paths.tls_dir, DIR_MODE)
    ca = CertificateAuthority.create()
    written = [(paths.hubble_ca_cert, ca.cert_pem, CERT_MODE), (paths.hubble_ca_key, ca.key_pem, KEY_MODE)]
    for node in topo.nodes:
        # Cilium's server name, plus this node's own name and underlay address so a client dialling
        # HOST:4244 verifies without --tls-server-name.
        issued = ca.issue_server(server_wildcard(cluster), [server_wildcard(cluster), server_name(node.name, cluster)],
                                 [node.address])
        cert, key = paths.hubble_server_pair(node.name)
        written += [(cert, issued.cert_pem, CERT_MODE), (key, issued.key_pem, KEY_MODE)]
    relay = ca.issue_client(RELAY_CLIENT_NAME)
    cert, key = paths.hubble_relay_client_pair
    written += [(cert, relay.cert_pem, CERT_MODE), (key, relay.key_pem, KEY_MODE)]
    for path, data, mode in written:
        _write(path, data, mode)
    return [path for path, _, _ in written]
