"""Secrets: ``data`` (base64 values) and ``stringData`` (plain) under config-key names, and a ``type``.

Membrane reads them for L7 ``headerMatches`` entries naming a ``secret`` (Cilium: the secret holds the
header value as its one entry). ``stringData`` is folded into ``data`` at apply, as the API server does.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from membrane.model.configmap import _check_keys
from membrane.model.fields import Fields, invalid, join

FIELDS = ("apiVersion", "kind", "metadata", "data", "stringData", "type", "immutable")


def check_secret(obj: dict[str, Any]) -> None:
    """Validate a Secret in place (metadata is checked by the caller); stringData goes into data."""
    top = Fields(obj, "", FIELDS)
    data = _check_keys(top.raw("data") or {}, "data")
    for key, value in data.items():
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise invalid(join("data", key), "<redacted>", "illegal base64 data") from None
    strings = _check_keys(top.raw("stringData") or {}, "stringData")
    top.string("type")
    top.boolean("immutable")
    if strings:
        merged = dict(data)
        merged.update({k: base64.b64encode(v.encode()).decode() for k, v in strings.items()})
        obj["data"] = merged
        obj.pop("stringData", None)
    obj.setdefault("type", "Opaque")


def secret_value(obj: dict[str, Any] | None) -> str | None:
    """The value of a Secret holding exactly one entry (what headerMatches compares), else None."""
    data = (obj or {}).get("data") or {}
    if len(data) != 1:
        return None
    try:
        return base64.b64decode(next(iter(data.values()))).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
