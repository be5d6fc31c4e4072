"""One CNI plugin invocation, from the environment and stdin to stdout and the exit status.

The Python plugin (membrane.cni.main) runs it with a forwarder that POSTs to the agent; the agent's
``POST /v1/cni/exec`` runs it in-process for the compiled plugin (cni/membrane-cni-shim.c), with a
forwarder that calls the agent's CNI handlers directly. One function for both keeps their stdout, error
objects and exit codes identical.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from membrane.api.cni_errors import INTERNAL, IO_FAILURE, CNIError
from membrane.api.cni_request import CNIRequest, decode_netconf, read_environment, validate_netconf
from membrane.api.cni_versions import CURRENT_VERSION, SUPPORTED_VERSIONS, version_info

ABOUT = "CNI plugin membrane-cni v0.1.0"

# Forwards a validated request to the agent: its JSON reply, or raises CNIError.
Forwarder = Callable[[CNIRequest], object]


class Outcome:
    """What the runtime sees: ``stdout``, ``stderr`` and the exit ``status``."""

    def __init__(self, status: int, stdout: str = "", stderr: str = "") -> None:
        self.status = status
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"Outcome(status={self.status!r}, stdout={self.stdout!r}, stderr={self.stderr!r})"


def render(obj: Any) -> str:
    """The plugin's stdout for one JSON object."""
    return json.dumps(obj, indent=4) + "\n"


def add_result(request: CNIRequest, reply: object) -> dict[str, Any] | None:
    """The ``result`` object of the agent's reply to ADD (None for other commands). Raises CNIError."""
    if request.command != "ADD":
        return None
    result = reply.get("result") if isinstance(reply, dict) else None
    if not isinstance(result, dict):
        raise CNIError(IO_FAILURE, "malformed reply from the membrane agent",
                       f"ADD reply has no \"result\" object: {json.dumps(reply)[:200]}")
    result.setdefault("cniVersion", request.cni_version)
    return result


def invoke(environ: Mapping[str, str], read_stdin: Callable[[], bytes], forward: Forwarder) -> Outcome:
    """One invocation; exit status 0 on success, 1 after an error object on stdout."""
    version = CURRENT_VERSION
    try:
        if not environ.get("CNI_COMMAND"):
            return Outcome(0, stderr=f"{ABOUT}\nCNI protocol versions supported: {', '.join(SUPPORTED_VERSIONS)}\n")
        request = read_environment(environ)
        if request.command == "VERSION":
            return Outcome(0, render(version_info()))
        try:
            raw = read_stdin()
        except OSError as exc:
            raise CNIError(IO_FAILURE, f"error reading from stdin: {exc}") from None
        request.netconf = decode_netconf(raw)
        requested = request.netconf.get("cniVersion")
        if requested in SUPPORTED_VERSIONS:
            version = str(requested)
        validate_netconf(request.command, request.netconf)
        result = add_result(request, forward(request))
        return Outcome(0, render(result) if result is not None else "")
    except CNIError as exc:
        return Outcome(1, render(exc.to_dict(version)))
    except Exception as exc:  # the runtime must always get a CNI error object
        return Outcome(1, render(CNIError(INTERNAL, "internal error in membrane-cni",
                                          f"{type(exc).__name__}: {exc}").to_dict(version)))
