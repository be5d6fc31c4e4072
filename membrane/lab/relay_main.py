"""The lab's Hubble relay: one Observer API over every node's (``/run/membrane/<lab>/relay.sock``).

It runs in the first node's network namespace (``lab create`` starts it with nsenter) and dials every
node's Hubble server on ``<node IP>:4244`` as Cilium's relay does: with mutual TLS (its client
certificate from ``/run/membrane/<lab>/tls/``, each node verified as
``<node>.<cluster>.hubble-grpc.cilium.io``) unless the lab has ``hubble.tls.enabled=false``. Clients
reach it on that socket and, as ``hubble-relay``, on TCP :4245 in that namespace (plaintext, as
hubble-relay serves by default).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from membrane.hubbleserver.certs import server_name
from membrane.hubbleserver.observer import SERVER_PORT
from membrane.hubbleserver.relay import Peer, Relay
from membrane.hubbleserver.tls import ClientTLS, TLSConfigError
from membrane.lab.paths import LabPaths
from membrane.lab.record import load_record

RELAY_PORT = 4245


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="membrane-relay")
    parser.add_argument("--lab", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s relay %(message)s")
    record = load_record(args.lab)
    if record is None:
        logging.error("lab %s not found", args.lab)
        return 1
    paths = LabPaths(args.lab)
    config = record.topology.config
    tls = None
    if config.hubble_tls_enabled:
        cert, key = paths.hubble_relay_client_pair
        tls = ClientTLS((paths.hubble_ca_cert,), cert, key)
        try:
            tls.credentials()  # fail now, with the file's name, rather than on every call
        except TLSConfigError as exc:
            logging.error("Hubble TLS: %s", exc)
            return 1
    peers = [Peer(n.name, f"{n.address}:{SERVER_PORT}", server_name(n.name, config.cluster_name))
             for n in record.topology.nodes]
    relay = Relay(peers, f"{paths.run_dir}/relay.sock", f"0.0.0.0:{RELAY_PORT}", tls=tls)
    relay.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    logging.info("relay serving %d nodes (%s) on %s/relay.sock and :%d", len(peers),
                 "mTLS" if tls is not None else "plaintext", paths.run_dir, RELAY_PORT)
    done.wait()
    relay.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
