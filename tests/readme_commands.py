"""The ``$ membrane …`` lines of README.md, as argument vectors: the README's promise that each runs as written."""

from __future__ import annotations

import os
import shlex

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
PROMPT = "$ membrane "


def readme_commands(path: str = README) -> list[list[str]]:
    """Every ``$ membrane ARGS  # comment`` line inside a fenced block, as ``[ARGS...]`` (comment dropped)."""
    commands: list[list[str]] = []
    fenced = False
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("```"):
                fenced = not fenced
                continue
            if fenced and line.startswith(PROMPT):
                commands.append(shlex.split(line[len(PROMPT):], comments=True))
    return commands
