"""Errors raised by validation: one message that says where (file, document, field) and why."""

from __future__ import annotations


class ValidationError(ValueError):
    """Bad input. ``str(err)`` is the full user-facing message."""

    def __init__(self, message: str, path: str = "") -> None:
        self.field_path = path
        self.reason = message
        super().__init__(f"{path}: {message}" if path else message)

    def within(self, prefix: str) -> ValidationError:
        """The same error located under an outer prefix (a file and document, or a parent field)."""
        return ValidationError(self.reason, f"{prefix}: {self.field_path}" if self.field_path else prefix)
