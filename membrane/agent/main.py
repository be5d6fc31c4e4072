"""``membrane-agent``: the node daemon entry point."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from membrane.model.naming import DEFAULT_LAB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="membrane-agent", description="Membrane node agent")
    parser.add_argument("--lab", default=DEFAULT_LAB, help="lab name (sockets under /run/membrane/<lab>)")
    parser.add_argument("--node", required=True, help="this node's name")
    parser.add_argument("--cluster", default="default", help="cluster name (etcd prefix)")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format=f"%(asctime)s %(levelname)s agent[{args.node}] %(name)s: %(message)s",
    )
    from membrane.agent.daemon import Agent

    agent = Agent(args.lab, args.node, args.cluster)

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
