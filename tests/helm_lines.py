"""The seeds' Helm lines as ``membrane lab`` argument lists: ``helm install`` → ``lab create``,
``helm upgrade`` → ``lab upgrade``, everything else unchanged.

``tests/unit/fixtures/helm-lines.txt`` is a copy of the team's ``shared/seed-data/helm-lines.txt``.
"""

from __future__ import annotations

import os
import shlex

HELM_LINES = os.path.join(os.path.dirname(__file__), "unit", "fixtures", "helm-lines.txt")


def helm_commands(path: str = HELM_LINES) -> list[list[str]]:
    with open(path) as fh:
        blocks = [b.strip() for b in fh.read().split("\n\n")]
    out = []
    for block in blocks:
        if not block.startswith("helm "):
            continue
        words = shlex.split(block)
        verb = {"install": "create", "upgrade": "upgrade"}[words[1]]
        out.append(["lab", verb, *words[2:]])
    return out
