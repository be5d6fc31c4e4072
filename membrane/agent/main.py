"""``membrane-agent``: the node daemon entry point (``membrane-agent --help`` lists every option)."""

from __future__ import annotations

import logging
import signal
import sys

from membrane.agent.config import load_agent_config
from membrane.model.options import OptionError


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = load_agent_config(argv)
    except OptionError as exc:
        print(f"membrane-agent: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if cfg.debug else logging.INFO,
        format=f"%(asctime)s %(levelname)s agent[{cfg.node}] %(name)s: %(message)s",
    )
    from membrane.agent.daemon import Agent

    agent = Agent(cfg)

    def _terminate(signum: int, _frame: object) -> None:
        logging.getLogger("membrane.agent").info("signal %d: stopping", signum)
        agent._stop.set()

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        agent.start()
        agent.run_forever()
    except Exception:
        logging.getLogger("membrane.agent").exception("agent failed")
        agent.stop()
        return 1
    agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
