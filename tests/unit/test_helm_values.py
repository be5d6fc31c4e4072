"""Helm's value syntax: --set/--set-string parsing, values files, merge order."""

from __future__ import annotations

from pathlib import Path

import pytest

from membrane.model.errors import ValidationError
from membrane.model.helm_values import combine, flatten, load_values_file, merge, parse_set


def test_dotted_keys_nest_and_values_are_typed() -> None:
    assert parse_set("a.b=c") == {"a": {"b": "c"}}
    assert parse_set("debug.enabled=true,operator.replicas=1,x=null,y=007") == {
        "debug": {"enabled": True}, "operator": {"replicas": 1}, "x": None, "y": "007"}


def test_set_string_keeps_strings() -> None:
    assert parse_set("a=true,b=1", string=True) == {"a": "true", "b": "1"}
    assert parse_set("l={true,2}", string=True) == {"l": ["true", "2"]}


def test_lists_and_escaped_commas() -> None:
    line = ("hubble.metrics.enabled={dns:query;ignoreAAAA,drop,"
            "httpV2:exemplars=true;labelsContext=source_ip\\,source_namespace}")
    assert parse_set(line) == {"hubble": {"metrics": {"enabled": [
        "dns:query;ignoreAAAA", "drop", "httpV2:exemplars=true;labelsContext=source_ip,source_namespace"]}}}
    assert parse_set("a={}") == {"a": []}
    assert parse_set("a={x},b=y") == {"a": ["x"], "b": "y"}
    assert parse_set("a=x\\,y") == {"a": "x,y"}
    assert parse_set("nodeSelector.kubernetes\\.io/os=linux") == {"nodeSelector": {"kubernetes.io/os": "linux"}}


@pytest.mark.parametrize("text, message", [
    ("", "expected key=value"),
    ("novalue", "key 'novalue' has no value"),
    ("a..b=1", "empty segment"),
    ("a={x,y", "missing its closing '}'"),
    ("a={x}z", "unexpected 'z'"),
])
def test_bad_set_is_named(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_set(text, where=f"--set {text}")
    assert message in str(err.value) and str(err.value).startswith("--set")


def test_merge_order_files_then_sets_and_null_deletes() -> None:
    base = {"hubble": {"relay": {"enabled": True}, "ui": {"enabled": True}}, "debug": {"enabled": True}}
    f1 = load_values_file("hubble:\n  ui:\n    enabled: false\nipam: {mode: kubernetes}\n", "v1.yaml")
    f2 = load_values_file("ipam: {mode: cluster-pool}\n", "v2.yaml")
    out = combine([f1, f2], [parse_set("ipam.mode=kubernetes"), parse_set("debug=null")], base=base)
    assert out == {"hubble": {"relay": {"enabled": True}, "ui": {"enabled": False}}, "ipam": {"mode": "kubernetes"}}
    assert base["hubble"]["ui"]["enabled"] is True  # inputs are not changed
    assert merge({"a": {"b": 1}}, {"a": 2}) == {"a": 2}


@pytest.mark.parametrize("text, message", [
    ("[1, 2]", "v.yaml: expected a mapping of values"),
    ("a: [unclosed", "v.yaml: invalid YAML"),
    ("1: x", "v.yaml: key 1 is not a string"),
])
def test_bad_values_files_are_located(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        load_values_file(text, "v.yaml")
    assert message in str(err.value)


def test_empty_values_file_is_no_values() -> None:
    assert load_values_file("# nothing\n", "v.yaml") == {}


def test_flatten_keeps_lists_as_leaves() -> None:
    assert flatten({"a": {"b": [1, 2], "c": {"d": True}}, "e": {}}) == {"a.b": [1, 2], "a.c.d": True, "e": {}}


def test_cli_values_files_merge_in_order_and_set_wins(tmp_path: Path) -> None:
    from membrane.cli.lab_helm_cmds import read_values
    from membrane.cli.main import build_parser

    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("ipam: {mode: kubernetes}\nhubble: {relay: {enabled: true}}\n")
    second.write_text("ipam: {mode: cluster-pool}\n")
    args = build_parser().parse_args(["lab", "upgrade", "-f", str(first), "--values", str(second),
                                      "--set", "ipam.mode=kubernetes", "--set-string", "cluster.name=007"])
    files, sets = read_values(args)
    assert combine(files, sets) == {"ipam": {"mode": "kubernetes"}, "hubble": {"relay": {"enabled": True}},
                                    "cluster": {"name": "007"}}


def test_cli_missing_values_file_is_named(tmp_path: Path) -> None:
    from membrane.cli.arguments import CLIError
    from membrane.cli.lab_helm_cmds import read_values
    from membrane.cli.main import build_parser

    args = build_parser().parse_args(["lab", "upgrade", "-f", str(tmp_path / "nope.yaml")])
    with pytest.raises(CLIError, match=r"nope.yaml: No such file or directory"):
        read_values(args)
