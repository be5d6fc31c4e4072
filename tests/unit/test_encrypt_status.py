"""``membrane encrypt status`` and the ``Encryption:`` line of the agent's status page (pure renderers)."""

from __future__ import annotations

from datetime import UTC, datetime

from membrane.cli.dbg_status import render_status
from membrane.cli.encrypt_cmds import render_encrypt_status
from membrane.endpoint.encryption import status_text

KEY = "dGhpcyBpcyBub3QgYSByZWFsIGtleSwganVzdCAzMiE="
PEER = {"public-key": "cGVlciBrZXkgcGVlciBrZXkgcGVlciBrZXkgcGVlciE=", "endpoint": "192.168.20.101:51871",
        "allowed-ips": ["10.244.1.0/24", "192.168.20.101/32"], "transfer-rx": 1234, "transfer-tx": 5678}
STATUS = {"mode": "Wireguard", "msg": status_text("cilium_wg0", KEY, 51871, 1),
          "wireguard": {"interfaces": [{"name": "cilium_wg0", "public-key": KEY, "listen-port": 51871,
                                        "peer-count": 1, "peers": [PEER]}]}}


def test_encrypt_status_prints_as_cilium_dbg() -> None:
    assert render_encrypt_status(STATUS) == (
        f"Encryption: Wireguard\nInterface: cilium_wg0\n\tPublic key: {KEY}\n\tNumber of peers: 1")


def test_verbose_lists_each_peer() -> None:
    text = render_encrypt_status(STATUS, verbose=True)
    assert f"\tPeer: {PEER['public-key']}\n\t\tEndpoint: 192.168.20.101:51871\n" in text
    assert "\t\tAllowed IPs: 10.244.1.0/24, 192.168.20.101/32\n" in text
    assert text.endswith("\t\tTransfer: 1234 bytes received, 5678 bytes sent")


def test_disabled_is_one_line() -> None:
    assert render_encrypt_status({"mode": "Disabled", "msg": ""}) == "Encryption: Disabled"


def test_status_page_line() -> None:
    page = render_status({"membrane": {"state": "Ok", "msg": "0.1.0"}, "encryption": STATUS}, False,
                         now=datetime(2024, 5, 1, tzinfo=UTC))
    line = next(line for line in page.splitlines() if line.startswith("Encryption:"))
    assert line.split(None, 1)[1] == f"Wireguard   [cilium_wg0 (Pubkey: {KEY}, Port: 51871, Peers: 1)]"
