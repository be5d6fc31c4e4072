"""Reading a daemon's ``--config-file`` (YAML or JSON) for the option resolver, with the file named in
every error: shared by membrane-agent and membrane-operator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from membrane.model.options import OptionError, parse_file_text


def config_file_path(flag: str | None, environ: Mapping[str, str]) -> str:
    """``--config-file``, else ``$MEMBRANE_CONFIG_FILE``, else none ("")."""
    return flag or environ.get("MEMBRANE_CONFIG_FILE", "")


def read_config_file(path: str) -> Any:
    """The parsed file at ``path`` (None when no file is given); OptionError if unreadable or malformed."""
    if not path:
        return None
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as exc:
        raise OptionError(f"config file {path}: {exc.strerror}") from None
    return parse_file_text(text, f"config file {path}")
