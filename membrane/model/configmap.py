"""ConfigMaps: string data under key names; the ``kube-system/ip-masq-agent`` one is also checked
as ip-masq-agent's configuration (membrane.model.ipmasq), so a bad one is refused at apply."""

from __future__ import annotations

import re
from typing import Any

from membrane.model.fields import Fields, as_mapping, as_str, invalid, join
from membrane.model.ipmasq import config_of_configmap, is_ipmasq_configmap

FIELDS = ("apiVersion", "kind", "metadata", "data", "binaryData", "immutable")
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
MAX_KEY = 253


def _check_keys(data: Any, path: str) -> dict[str, Any]:
    data = as_mapping(data, path)
    for key, value in data.items():
        where = join(path, str(key))
        if not isinstance(key, str) or not _KEY.match(key) or len(key) > MAX_KEY:
            raise invalid(path, key, "a valid config key must consist of alphanumeric characters, '-', '_' or '.'")
        as_str(value, where)
    return data


def check_configmap(obj: dict[str, Any]) -> None:
    """Validate a ConfigMap in place (metadata is checked by the caller)."""
    top = Fields(obj, "", FIELDS)
    data = _check_keys(top.raw("data") or {}, "data")
    binary = _check_keys(top.raw("binaryData") or {}, "binaryData")
    for key in data.keys() & binary.keys():
        raise invalid(join("data", key), key, "duplicate of key present in binaryData")
    top.boolean("immutable")
    if is_ipmasq_configmap(obj):
        config_of_configmap(obj)
