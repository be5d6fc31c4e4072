"""membrane-cni: the CNI plugin executable (CNI 1.0, plus STATUS and GC from 1.1).

The runtime execs it once per operation with ``CNI_*`` variables and the network configuration on stdin.
It validates the invocation, forwards it to the node's agent as ``POST /v1/cni/<command>`` over the
unix socket named by the netconf's ``agentSocket``, and prints the agent's ADD result, or a CNI error
object, on stdout. It imports only ``json``, ``socket`` and the small CNI modules (membrane.cni.wire
instead of http.client): this runs once per pod start, and its imports were most of its time.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any, BinaryIO, TextIO

from membrane.api.cni_errors import (
    INTERNAL,
    IO_FAILURE,
    PLUGIN_NOT_AVAILABLE,
    TRY_AGAIN_LATER,
    CNIError,
)
from membrane.api.cni_versions import CURRENT_VERSION, SUPPORTED_VERSIONS, version_info
from membrane.cni.request import CNIRequest, decode_netconf, read_environment, validate_netconf
from membrane.cni.wire import AgentReplyError, post_json

ABOUT = "CNI plugin membrane-cni v0.1.0"
# Seconds to wait for the agent. ADD creates a veth, addresses, routes and BPF state, so it gets long.
AGENT_TIMEOUT = {"ADD": 120.0, "DEL": 120.0, "CHECK": 60.0, "GC": 120.0, "STATUS": 10.0}


def _print_json(out: TextIO, obj: Any) -> None:
    out.write(json.dumps(obj, indent=4) + "\n")
    out.flush()


def call_agent(request: CNIRequest) -> dict[str, Any] | None:
    """Forward the request; the agent's ``result`` object (ADD) or None. Raises CNIError."""
    path = f"/v1/cni/{request.command.lower()}"
    timeout = AGENT_TIMEOUT[request.command]
    try:
        reply = post_json(request.agent_socket, path, request.wire_body(), timeout=timeout)
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
    if request.command != "ADD":
        return None
    result = reply.get("result") if isinstance(reply, dict) else None
    if not isinstance(result, dict):
        raise CNIError(IO_FAILURE, "malformed reply from the membrane agent",
                       f"ADD reply has no \"result\" object: {json.dumps(reply)[:200]}")
    result.setdefault("cniVersion", request.cni_version)
    return result


def run(environ: Mapping[str, str], stdin: BinaryIO, stdout: TextIO, stderr: TextIO) -> int:
    """One invocation; returns the exit status (0 success, 1 after printing an error object)."""
    version = CURRENT_VERSION
    try:
        if not environ.get("CNI_COMMAND"):
            stderr.write(f"{ABOUT}\nCNI protocol versions supported: {', '.join(SUPPORTED_VERSIONS)}\n")
            return 0
        request = read_environment(environ)
        if request.command == "VERSION":
            _print_json(stdout, version_info())
            return 0
        try:
            raw = stdin.read()
        except OSError as exc:
            raise CNIError(IO_FAILURE, f"error reading from stdin: {exc}") from None
        request.netconf = decode_netconf(raw)
        requested = request.netconf.get("cniVersion")
        if requested in SUPPORTED_VERSIONS:
            version = str(requested)
        validate_netconf(request.command, request.netconf)
        result = call_agent(request)
        if result is not None:
            _print_json(stdout, result)
        return 0
    except CNIError as exc:
        _print_json(stdout, exc.to_dict(version))
        return 1
    except Exception as exc:  # the runtime must always get a CNI error object
        _print_json(stdout, CNIError(INTERNAL, "internal error in membrane-cni",
                                     f"{type(exc).__name__}: {exc}").to_dict(version))
        return 1


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
