"""``membrane-operator``: the cluster-wide daemon entry point (``--help`` lists every option)."""

from __future__ import annotations

import logging
import signal
import sys

from membrane.model.options import OptionError
from membrane.operator.config import load_operator_config


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = load_operator_config(argv)
    except OptionError as exc:
        print(f"membrane-operator: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if cfg.debug else logging.INFO,
        format="%(asctime)s %(levelname)s operator %(name)s: %(message)s",
    )
    from membrane.operator.daemon import Operator

    op = Operator(cfg)
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
