"""DecodedObjects: a mirror's JSON values decoded once per revision."""

from __future__ import annotations

import json
from dataclasses import dataclass

from membrane.agent.pod_objects import DecodedObjects


@dataclass
class KV:
    key: str
    value: bytes
    mod_revision: int


class Mirror:
    """The two calls DecodedObjects makes of a store Mirror."""

    def __init__(self) -> None:
        self.kvs: dict[str, KV] = {}

    def put(self, key: str, obj: dict, revision: int) -> None:
        self.kvs[key] = KV(key, json.dumps(obj).encode(), revision)

    def get(self, key: str) -> KV | None:
        return self.kvs.get(key)

    def __len__(self) -> int:
        return len(self.kvs)


def test_one_object_per_revision_and_none_once_gone() -> None:
    mirror = Mirror()
    objects = DecodedObjects(mirror)  # type: ignore[arg-type]
    mirror.put("p/a", {"metadata": {"labels": {"app": "x"}}}, 5)
    first = objects.get("p/a")
    assert first == {"metadata": {"labels": {"app": "x"}}}
    assert objects.get("p/a") is first  # unchanged: the same object, not decoded again
    mirror.put("p/a", {"metadata": {"labels": {"app": "y"}}}, 6)
    second = objects.get("p/a")
    assert second is not first and second["metadata"]["labels"] == {"app": "y"}
    del mirror.kvs["p/a"]
    assert objects.get("p/a") is None
    assert objects.get("p/never") is None


def test_entries_of_keys_gone_from_the_mirror_are_dropped() -> None:
    mirror = Mirror()
    objects = DecodedObjects(mirror)  # type: ignore[arg-type]
    for i in range(200):
        mirror.put(f"p/{i}", {"i": i}, i + 1)
        objects.get(f"p/{i}")
    for i in range(199):
        del mirror.kvs[f"p/{i}"]
    mirror.put("p/new", {"i": -1}, 1000)
    objects.get("p/new")  # the cache (200 entries) outgrew 2 × 2 + 64: stale keys are swept
    assert len(objects._cache) <= 2 * len(mirror) + 64
