"""The seeds' Helm lines as ``membrane lab`` argument lists.

``tests/unit/fixtures/helm-lines.txt`` is a copy of the team's ``shared/seed-data/helm-lines.txt``.
"""

from __future__ import annotations

import os
import shlex

HELM_LINES = os.path.join(os.path.dirname(__file__), "unit", "fixtures", "helm-lines.txt")
_HELM_ONLY = {"--version", "--namespace", "-n"}  # flags with a value that a lab has no use for


def helm_commands(path: str = HELM_LINES) -> list[list[str]]:
    """Each ``helm install|upgrade RELEASE CHART …`` line as ``lab create|upgrade …`` arguments."""
    with open(path) as fh:
        blocks = [b.strip() for b in fh.read().split("\n\n")]
    out = []
    for block in blocks:
        if not block.startswith("helm "):
            continue
        words = shlex.split(block)
        verb = {"install": "create", "upgrade": "upgrade"}[words[1]]
        rest, args = words[4:], []
        while rest:
            word = rest.pop(0)
            if word in _HELM_ONLY:
                rest.pop(0)
            else:
                args.append(word)
        out.append(["lab", verb, *args])
    return out
