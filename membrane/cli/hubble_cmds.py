"""``membrane hubble ui [--port N]``: Hubble UI for the lab on ``http://127.0.0.1:N/`` (default 12000), fed
by the lab's relay (``unix:///run/membrane/<lab>/relay.sock``, or ``--server``). Loopback only; Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from membrane.cli.arguments import CLIError
from membrane.cli.target import relay_target

DEFAULT_UI_PORT = 12000


def add_parser(subparsers: Any, lab_arg: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    p = subparsers.add_parser("hubble", help="Hubble tools (ui)")
    p.set_defaults(handler=run)  # main dispatches to the handler its sub-parser set
    if lab_arg is not None:
        lab_arg(p)
    hsub = p.add_subparsers(dest="hubble_cmd", required=True, metavar="COMMAND")
    q = hsub.add_parser("ui", help="serve Hubble UI (service map, flows) on 127.0.0.1")
    if lab_arg is not None:
        lab_arg(q)
    q.add_argument("--port", type=int, default=DEFAULT_UI_PORT, help=f"local port (default {DEFAULT_UI_PORT}; 0: any)")
    q.add_argument("--server", default=None, help="the relay: unix:///path or host:port (default: the lab's)")


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port: {args.port} is not a port (0-65535)")
    from membrane.hubbleserver.ui import UIServer  # grpc only for this command

    target = args.server or relay_target(args.lab)
    try:
        server = UIServer(target, args.port)
    except OSError as exc:
        raise CLIError(f"--port {args.port}: cannot listen on 127.0.0.1: {exc.strerror or exc}") from exc
    print(f"Hubble UI on http://127.0.0.1:{server.port}/ (relay {target}); Ctrl-C to stop", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
        server.client.close()
    sys.stdout.flush()
    return 0
