"""Loading manifests: document numbering, List expansion, YAML/JSON errors, -f FILE|DIR|-."""

from __future__ import annotations

import io
import json

import pytest

from membrane.cli.manifests import load_paths
from membrane.model.errors import ValidationError
from membrane.model.loader import Located, load_documents, load_json, load_located

POD = "apiVersion: v1\nkind: Pod\nmetadata: {name: %s}\nspec: {containers: [{name: c, image: i}]}\n"


def error(fn, *args, **kwargs) -> str:
    with pytest.raises(ValidationError) as exc:
        fn(*args, **kwargs)
    return str(exc.value)


def test_single_document():
    assert load_documents(POD % "a", "a.yaml") == [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
         "spec": {"containers": [{"name": "c", "image": "i"}]}}
    ]


def test_documents_are_numbered_as_the_user_sees_them_and_empty_ones_skipped():
    text = "---\n" + POD % "a" + "---\n---\n# only a comment\n---\n" + POD % "b" + "---\n"
    docs = load_located(text, "demo.yaml")
    assert [(d.obj["metadata"]["name"], d.doc, d.where) for d in docs] == [
        ("a", 1, "demo.yaml:doc 1"),
        ("b", 4, "demo.yaml:doc 4"),
    ]


def test_leading_comment_before_first_separator_is_not_a_document():
    docs = load_located("# header\n---\n" + POD % "a", "x.yaml")
    assert [d.doc for d in docs] == [1]


def test_empty_text_has_no_documents():
    assert load_documents("", "x.yaml") == []
    assert load_documents("---\n---\n", "x.yaml") == []


def test_list_items_are_expanded_with_their_index():
    text = "apiVersion: v1\nkind: List\nitems:\n- {kind: Pod, metadata: {name: a}}\n- {kind: Pod, metadata: {name: b}}\n"
    docs = load_located(POD % "z" + "---\n" + text, "l.yaml")
    assert [(d.obj["metadata"]["name"], d.where) for d in docs] == [
        ("z", "l.yaml:doc 1"),
        ("a", "l.yaml:doc 2: items[0]"),
        ("b", "l.yaml:doc 2: items[1]"),
    ]
    assert load_documents("kind: List\nitems: []\n", "l.yaml") == []


def test_list_item_that_is_not_a_mapping():
    assert error(load_documents, "kind: List\nitems: [3]\n", "l.yaml") == (
        "l.yaml:doc 1: items[0]: a manifest must be a mapping with apiVersion and kind"
    )


def test_document_that_is_not_a_mapping():
    text = POD % "a" + "---\n- a\n- b\n"
    assert error(load_documents, text, "d.yaml") == (
        "d.yaml:doc 2: a manifest must be a mapping with apiVersion and kind, not a list"
    )
    assert "not a string" in error(load_documents, "just text", "d.yaml")


def test_yaml_syntax_error_names_document_line_and_column():
    text = POD % "a" + "---\nkind: Pod\nmetadata: {name: [b\n"
    msg = error(load_documents, text, "bad.yaml")
    assert msg.startswith("bad.yaml:doc 2: invalid YAML at line 8, column 1: ")


def test_yaml_indentation_error():
    text = "apiVersion: v1\nkind: Pod\n metadata: x\n"
    msg = error(load_documents, text, "bad.yaml")
    assert msg.startswith("bad.yaml:doc 1: invalid YAML at line 3, column 10: mapping values are not allowed here")


def test_tab_indentation_is_a_syntax_error():
    msg = error(load_documents, "a:\n\tb: 1\n", "tab.yaml")
    assert msg.startswith("tab.yaml:doc 1: invalid YAML at line 2, column 1: ")


def test_duplicate_keys_are_rejected():
    text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  name: b\n"
    assert error(load_documents, text, "dup.yaml") == (
        'dup.yaml:doc 1: invalid YAML at line 5, column 3: found duplicate key "name" (while constructing a mapping)'
    )


def test_merge_keys_may_be_overridden_without_duplicate_error():
    text = "base: &b {x: 1, y: 2}\nkind: Pod\nother:\n  <<: *b\n  y: 3\n"
    assert load_documents(text, "m.yaml")[0]["other"] == {"x": 1, "y": 3}


def test_dates_stay_strings_and_keys_become_strings():
    text = "kind: Pod\nmetadata:\n  creationTimestamp: 2024-01-02T03:04:05Z\n  labels: {80: x, true: y}\n"
    doc = load_documents(text, "t.yaml")[0]
    assert doc["metadata"]["creationTimestamp"] == "2024-01-02T03:04:05Z"
    assert doc["metadata"]["labels"] == {"80": "x", "true": "y"}


def test_non_json_values_are_rejected():
    msg = error(load_documents, "kind: Pod\ndata: !!binary aGVsbG8=\n", "b.yaml")
    assert msg.startswith("b.yaml:doc 1: data: unsupported YAML value of type bytes")


def test_json_file(tmp_path):
    path = tmp_path / "pod.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "j"}}))
    docs = load_paths([str(path)])
    assert [(d.obj["metadata"]["name"], d.where) for d in docs] == [("j", f"{path}:doc 1")]


def test_json_syntax_error_has_line_and_column():
    assert error(load_json, '{\n  "kind": "Pod",\n  oops\n}', "p.json") == (
        "p.json:doc 1: invalid JSON at line 3, column 3: Expecting property name enclosed in double quotes"
    )


def test_directory_reads_manifest_files_sorted_and_not_recursively(tmp_path):
    (tmp_path / "b.yml").write_text(POD % "b")
    (tmp_path / "a.yaml").write_text(POD % "a1" + "---\n" + POD % "a2")
    (tmp_path / "c.json").write_text(json.dumps({"kind": "Pod", "metadata": {"name": "c"}}))
    (tmp_path / "notes.txt").write_text("not: a manifest")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "d.yaml").write_text(POD % "d")
    docs = load_paths([str(tmp_path)])
    assert [(d.obj["metadata"]["name"], d.where) for d in docs] == [
        ("a1", f"{tmp_path}/a.yaml:doc 1"),
        ("a2", f"{tmp_path}/a.yaml:doc 2"),
        ("b", f"{tmp_path}/b.yml:doc 1"),
        ("c", f"{tmp_path}/c.json:doc 1"),
    ]


def test_several_paths_keep_their_order(tmp_path):
    (tmp_path / "x.yaml").write_text(POD % "x")
    (tmp_path / "y.yaml").write_text(POD % "y")
    docs = load_paths([str(tmp_path / "y.yaml"), str(tmp_path / "x.yaml")])
    assert [d.obj["metadata"]["name"] for d in docs] == ["y", "x"]


def test_located_unpacks_as_where_and_object():
    (doc,) = load_located(POD % "a", "a.yaml")
    where, obj = doc
    assert (where, obj) == ("a.yaml:doc 1", doc.obj)


def test_stdin():
    docs = load_paths(["-"], stdin=io.StringIO(POD % "s"))
    assert docs == [Located(docs[0].obj, "<stdin>", 1)]
    assert docs[0].where == "<stdin>:doc 1"


def test_missing_path():
    assert error(load_paths, ["/nonexistent/membrane-test.yaml"]) == (
        'the path "/nonexistent/membrane-test.yaml" does not exist'
    )


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"kind: Pod\nname: \xff\xfe\n")
    assert error(load_paths, [str(path)]) == f"{path}: not UTF-8 text (invalid byte at offset 16)"


def test_utf8_bom_is_ignored(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + (POD % "bom").encode())
    assert load_paths([str(path)])[0].obj["metadata"]["name"] == "bom"


def test_syntax_error_in_file_uses_the_path_as_source(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(POD % "ok" + "---\nkind: [\n")
    assert error(load_paths, [str(path)]).startswith(f"{path}:doc 2: invalid YAML at line ")


# ---- hostile YAML (issue 18): refused quickly, with the file, the document and the reason ----

def _alias_bomb(levels: int = 9) -> str:
    """A "billion laughs" manifest: each level is a list of nine aliases to the level before."""
    lines = ["apiVersion: v1", "kind: Pod", "metadata: {name: bomb}", "spec:", "  l0: &l0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]"]
    for i in range(1, levels + 1):
        lines.append(f"  l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly():
    import time

    text = _alias_bomb()
    assert len(text) < 600  # the bomb was 561 bytes
    start = time.monotonic()
    message = error(load_located, text, "bomb.yaml")
    assert time.monotonic() - start < 2.0
    assert message.startswith("bomb.yaml:doc 1: invalid YAML at line ")
    assert "excessive aliasing" in message


def test_recursive_alias_is_refused():
    message = error(load_located, "kind: Pod\nspec: &a {x: [*a]}\n", "r.yaml")
    assert message.startswith("r.yaml:doc 1: invalid YAML at line 2")
    assert "recursive alias" in message


def test_moderate_anchors_and_merge_keys_still_work():
    text = (
        "kind: Pod\nmetadata: {name: a, labels: &l {app: web, tier: front}}\n"
        "spec: {nodeSelector: *l, x: &d {a: 1, b: 2}, y: {<<: *d, c: 3}}\n"
    )
    [doc] = load_documents(text, "m.yaml")
    assert doc["spec"]["nodeSelector"] == {"app": "web", "tier": "front"}
    assert doc["spec"]["y"] == {"a": 1, "b": 2, "c": 3}


def test_deep_nesting_is_refused_not_a_recursion_error():
    assert "nested more than 100 levels deep" in error(load_located, "a: " + "[" * 3000, "d.yaml")
    assert "nested more than 100 levels deep" in error(load_json, "[" * 3000, "d.json")


def test_huge_integers_are_a_validation_error():
    assert error(load_located, "a: " + "9" * 5000, "i.yaml").startswith("i.yaml:doc 1: invalid YAML at line 1, column 4: ")
    assert error(load_json, '{"a": ' + "9" * 5000 + "}", "i.json").startswith("i.json:doc 1: invalid JSON: ")


@pytest.mark.parametrize("text, tag", [
    ("a: !!int\n", "int"), ("a: !!bool maybe\n", "bool"), ("a: !!float x\n", "float"), ("a: !!timestamp x\n", "timestamp"),
])
def test_explicit_tags_with_bad_values_are_validation_errors(text, tag):
    """Found by the fuzzer: PyYAML's constructors raised IndexError/KeyError/ValueError/AttributeError."""
    message = error(load_located, text, "t.yaml")
    assert message.startswith("t.yaml:doc 1: invalid YAML at line 1, column 4: cannot read ")
    assert f" as {tag} (" in message
