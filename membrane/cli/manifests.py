"""Reading manifests for ``-f FILE|DIR|-``: the file-system half of loading (parsing is membrane.model)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from membrane.model.errors import ValidationError
from membrane.model.loader import MANIFEST_SUFFIXES, STDIN_SOURCE, Located, decode_text, load_text


def _load_file(path: Path, source: str) -> list[Located]:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValidationError(f"cannot read: {err.strerror or err}", source) from None
    return load_text(decode_text(data, source), source)


def load_paths(paths: list[str], *, stdin: TextIO | None = None) -> list[Located]:
    """Manifests from ``-f`` arguments: files, directories (their *.yaml, *.yml, *.json, sorted, not
    recursive) and ``-`` for standard input. Raises ValidationError for a missing path."""
    located: list[Located] = []
    for arg in paths:
        if arg == "-":
            stream = stdin if stdin is not None else sys.stdin
            located.extend(load_text(stream.read(), STDIN_SOURCE))
            continue
        path = Path(arg)
        if path.is_dir():
            for child in sorted(path.iterdir(), key=lambda p: p.name):
                if child.suffix.lower() in MANIFEST_SUFFIXES and child.is_file():
                    located.extend(_load_file(child, str(child)))
        elif path.exists():
            located.extend(_load_file(path, arg))
        else:
            raise ValidationError(f'the path "{arg}" does not exist')
    return located
