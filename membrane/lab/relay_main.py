"""The lab's Hubble relay: one Observer API over every node's (``/run/membrane/<lab>/relay.sock``)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from membrane.hubbleserver.relay import Relay
from membrane.lab.record import load_record
from membrane.model.naming import LabPaths

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
    peers = [f"{paths.run_dir}/hubble-{n.name}.sock" for n in record.topology.nodes]
    relay = Relay(peers, f"{paths.run_dir}/relay.sock")
    relay.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    logging.info("relay serving %d nodes on %s/relay.sock", len(peers), paths.run_dir)
    done.wait()
    relay.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
