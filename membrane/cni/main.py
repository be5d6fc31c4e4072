"""membrane-cni: the CNI plugin executable (CNI 1.0, plus STATUS and GC from 1.1).

The runtime execs it once per operation with ``CNI_*`` variables and the network configuration on stdin.
It validates the invocation, forwards it to the node's agent as ``POST /v1/cni/<command>`` over the
unix socket named by the netconf's ``agentSocket``, and prints the agent's ADD result, or a CNI error
object, on stdout (membrane.api.cni_invocation). The compiled plugin (cni/membrane-cni-shim.c) execs
this one for whatever it does not forward itself. It imports only ``json``, ``socket`` and the small CNI
modules (membrane.cni.wire instead of http.client): its imports were most of its time.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import BinaryIO, TextIO

from membrane.api.cni_errors import IO_FAILURE, PLUGIN_NOT_AVAILABLE, TRY_AGAIN_LATER, CNIError
from membrane.api.cni_invocation import ABOUT, invoke
from membrane.api.cni_request import CNIRequest
from membrane.cni.wire import AgentReplyError, post_json

__all__ = ["ABOUT", "call_agent", "main", "run"]

# Seconds to wait for the agent. ADD creates a veth, addresses, routes and BPF state, so it gets long.
AGENT_TIMEOUT = {"ADD": 120.0, "DEL": 120.0, "CHECK": 60.0, "GC": 120.0, "STATUS": 10.0}


def call_agent(request: CNIRequest) -> object:
    """Forward the request; the agent's decoded JSON reply. Raises CNIError."""
    path = f"/v1/cni/{request.command.lower()}"
    timeout = AGENT_TIMEOUT[request.command]
    try:
        return post_json(request.agent_socket, path, request.wire_body(), timeout=timeout)
    except AgentReplyError as exc:
        raise CNIError.from_agent(exc.status, exc.body) from None
    except ValueError as exc:
        raise CNIError(IO_FAILURE, "malformed reply from the membrane agent",
                       f"{request.agent_socket}: {type(exc).__name__}: {exc}") from None
    except OSError as exc:
        code = PLUGIN_NOT_AVAILABLE if request.command == "STATUS" else TRY_AGAIN_LATER
        msg = ("membrane agent is not available" if code == PLUGIN_NOT_AVAILABLE
               else "membrane agent is not reachable; try again later")
        raise CNIError(code, msg, f"{request.agent_socket}: {exc.strerror or exc}") from None


def run(environ: Mapping[str, str], stdin: BinaryIO, stdout: TextIO, stderr: TextIO) -> int:
    """One invocation; returns the exit status (0 success, 1 after printing an error object)."""
    outcome = invoke(environ, stdin.read, call_agent)
    if outcome.stderr:
        stderr.write(outcome.stderr)
    if outcome.stdout:
        stdout.write(outcome.stdout)
        stdout.flush()
    return outcome.status


def main(
    environ: Mapping[str, str] | None = None,
    stdin: BinaryIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Console entry point ``membrane-cni``; the arguments exist for tests."""
    return run(
        os.environ if environ is None else environ,
        sys.stdin.buffer if stdin is None else stdin,
        sys.stdout if stdout is None else stdout,
        sys.stderr if stderr is None else stderr,
    )


if __name__ == "__main__":
    sys.exit(main())
