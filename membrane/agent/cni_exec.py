"""``POST /v1/cni/exec``: a whole plugin invocation run inside the agent, for the compiled plugin.

The compiled plugin (cni/membrane-cni-shim.c) does not validate anything. It sends the runtime's
``CNI_*`` variables and stdin as ``{"env": {...}, "stdin": "..."}`` and writes the answer back
unchanged: the body is the plugin's stdout and the ``Membrane-CNI-Exit`` header is its exit status.
Validation, error objects and the ADD result come from membrane.api.cni_invocation, the code the Python
plugin runs too. Requests go to the same handlers as ``POST /v1/cni/<command>``, in-process, and their
``APIFailure`` becomes the CNI error the Python plugin would print for that HTTP answer. A body that is
not such an object is a 400 without the header, and the compiled plugin then execs the Python one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from membrane.agent.api import APIFailure, RawReply
from membrane.api.cni_errors import INTERNAL, CNIError
from membrane.api.cni_invocation import invoke
from membrane.api.cni_request import CNIRequest

log = logging.getLogger(__name__)

EXIT_HEADER = "Membrane-CNI-Exit"


def _bad_body(details: str) -> APIFailure:
    return APIFailure(400, {"code": 6, "msg": "decoding request failed", "details": details})


class CNIExec:
    """Runs invocations against ``handlers``: CNI command (``ADD``, ``DEL`` ...) -> route handler."""

    def __init__(self, handlers: Mapping[str, Callable[[Any], Any]]) -> None:
        self.handlers = dict(handlers)

    def _forward(self, request: CNIRequest) -> object:
        handler = self.handlers.get(request.command)
        if handler is None:
            raise CNIError(INTERNAL, "membrane agent failed the request", f"no handler for {request.command}")
        try:
            return handler(request.wire_body())
        except APIFailure as fail:
            raise CNIError.from_agent(fail.status, fail.body) from None
        except Exception as exc:  # what the HTTP route would answer: 500 with an internal error object
            log.exception("CNI %s failed", request.command)
            raise CNIError(INTERNAL, f"internal error: {exc}") from None

    def handle(self, body: Any) -> RawReply:
        if not isinstance(body, dict):
            raise _bad_body("expected a JSON object with \"env\" and \"stdin\"")
        env, stdin = body.get("env"), body.get("stdin")
        if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise _bad_body("\"env\" must be an object of strings")
        if not isinstance(stdin, str):
            raise _bad_body("\"stdin\" must be a string")
        outcome = invoke(env, lambda: stdin.encode("utf-8", "surrogateescape"), self._forward)
        return RawReply(outcome.stdout.encode(), {EXIT_HEADER: str(outcome.status)})
