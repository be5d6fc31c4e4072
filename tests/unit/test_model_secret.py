"""Secrets (membrane.model.secret) and the agent's lookup of a headerMatches secret."""

from __future__ import annotations

import json

import pytest

from membrane.agent.proxy_sync import secret_lookup
from membrane.model.errors import ValidationError
from membrane.model.secret import secret_value
from membrane.model.validate import validate_object


def secret(**fields) -> dict:
    return validate_object({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tok", "namespace": "ns"},
                            **fields}, "test")


def test_string_data_is_folded_into_base64_data():
    s = secret(stringData={"value": "Bearer s3cret"})
    assert s["data"] == {"value": "QmVhcmVyIHMzY3JldA=="} and "stringData" not in s and s["type"] == "Opaque"
    assert secret_value(s) == "Bearer s3cret"
    assert secret_value(secret(data={"a": "YQ==", "b": "Yg=="})) is None  # not exactly one entry


@pytest.mark.parametrize(("fields", "where"), [
    ({"data": {"v": "not base64!"}}, "data.v"),
    ({"data": {"bad key": "YQ=="}}, "data"),
    ({"stringData": {"v": 1}}, "stringData.v"),
    ({"kind2": 1}, "kind2"),
])
def test_bad_secrets_are_refused_with_the_field(fields, where):
    with pytest.raises(ValidationError) as err:
        secret(**fields)
    assert where in str(err.value)


class FakeMirror:
    prefix = "/membrane/default/resources/core/Secret/"

    def __init__(self, objs: dict[str, dict]) -> None:
        self.objs = objs

    def get(self, key: str):
        obj = self.objs.get(key.removeprefix(self.prefix))
        return type("KV", (), {"value": json.dumps(obj)})() if obj is not None else None


def test_agent_lookup_reads_the_mirror():
    look = secret_lookup(FakeMirror({"ns/tok": secret(stringData={"v": "x"})}))
    assert look("ns", "tok") == "x"
    assert look("ns", "other") is None and look("", "tok") is None
