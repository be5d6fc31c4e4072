"""CNI error objects: the spec's well-known codes and the exception that carries one to stdout."""

from __future__ import annotations

from typing import Any

# Well-known error codes (CNI spec, "Error" section); 100+ are plugin specific.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_NETWORK_CONFIG = 7
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50
PLUGIN_LIMITED_CONNECTIVITY = 51
INTERNAL = 999  # libcni's ErrInternal: an error without a well-known code


class CNIError(Exception):
    """A failure reported to the runtime as ``{"cniVersion", "code", "msg", "details"}`` on stdout."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        self.code = code
        self.msg = msg
        self.details = details
        super().__init__(f"CNI error {code}: {msg}" + (f" ({details})" if details else ""))

    def to_dict(self, cni_version: str) -> dict[str, Any]:
        """The error object in the spec's shape; ``details`` is omitted when empty, as libcni does."""
        obj: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            obj["details"] = self.details
        return obj

    @classmethod
    def from_agent(cls, status: int, body: Any) -> CNIError:
        """The agent's own error object passed through; anything else becomes a precise INTERNAL error."""
        if isinstance(body, dict) and isinstance(body.get("code"), int) and not isinstance(body["code"], bool):
            details = body.get("details", "")
            if not isinstance(details, str):
                details = str(details)
            msg = body.get("msg")
            return cls(body["code"], msg if isinstance(msg, str) else f"agent returned HTTP {status}", details)
        if status == 503:
            return cls(TRY_AGAIN_LATER, "membrane agent is not ready; try again later", f"HTTP {status}: {body}")
        return cls(INTERNAL, "membrane agent failed the request", f"HTTP {status}: {body}")
