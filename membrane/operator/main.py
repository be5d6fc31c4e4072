"""``membrane-operator``: the cluster-wide daemon entry point."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from membrane.model.naming import DEFAULT_LAB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="membrane-operator", description="Membrane operator")
    parser.add_argument("--lab", default=DEFAULT_LAB)
    parser.add_argument("--cluster", default="default")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s operator %(name)s: %(message)s",
    )
    from membrane.operator.daemon import Operator

    op = Operator(args.lab, args.cluster)
    signal.signal(signal.SIGTERM, lambda *_: op.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: op.stop_event.set())
    try:
        op.run()
    except Exception:
        logging.getLogger("membrane.operator").exception("operator failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
