"""Label syntax, selectors and `membrane label` argument parsing."""

from __future__ import annotations

import pytest

from membrane.model import names
from membrane.model.errors import ValidationError
from membrane.model.labels import (
    LabelChanges,
    LabelSelector,
    Requirement,
    apply_label_changes,
    check_labels,
    check_selector,
    label_key_error,
    parse_label_assignments,
)


@pytest.mark.parametrize(
    "key", ["app", "app.kubernetes.io/name", "a", "A_b.c-d", "example.com/x", "x" * 63, "k8s-app",
            "io.kubernetes.pod.namespace"],
)
def test_valid_label_keys(key):
    assert label_key_error(key) is None


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "name part must be non-empty"),
        ("-app", "name part must consist of alphanumeric"),
        ("app-", "name part must consist of alphanumeric"),
        ("a b", "name part must consist of alphanumeric"),
        ("x" * 64, "name part must be no more than 63 characters"),
        ("/app", "prefix part must be non-empty"),
        ("Example.com/app", "prefix part a lowercase RFC 1123 subdomain"),
        ("a/b/c", "at most one '/'"),
        ("k8s:app", "name part must consist of alphanumeric"),
    ],
)
def test_invalid_label_keys(key, why):
    assert why in (label_key_error(key) or "")


def test_source_prefixed_keys_only_when_allowed():
    assert label_key_error("k8s:io.kubernetes.pod.namespace", sources=True) is None
    assert label_key_error("any:app", sources=True) is None
    assert label_key_error("reserved:host", sources=True) is None
    assert label_key_error("cidr:10.0.0.0/8", sources=True) is None
    assert label_key_error("$host", sources=True) is None
    assert "unknown label source 'k8'" in (label_key_error("k8:app", sources=True) or "")
    assert "name part" in (label_key_error("k8s:-bad", sources=True) or "")


@pytest.mark.parametrize("value", ["", "web", "v1.2_3-x", "A" * 63])
def test_valid_label_values(value):
    assert names.label_value_error(value) is None


@pytest.mark.parametrize("value", ["-web", "web-", "a b", "a/b", "A" * 64])
def test_invalid_label_values(value):
    assert names.label_value_error(value) is not None


def error(fn, *args, **kwargs) -> str:
    with pytest.raises(ValidationError) as exc:
        fn(*args, **kwargs)
    return str(exc.value)


def test_check_labels_errors_name_the_field():
    assert error(check_labels, {"bad key": "x"}, "metadata.labels").startswith(
        'metadata.labels: Invalid value: "bad key": name part must consist of alphanumeric characters'
    )
    assert error(check_labels, {"app": "no good"}, "metadata.labels").startswith(
        'metadata.labels.app: Invalid value: "no good": a valid label must be an empty string'
    )
    assert error(check_labels, {"app": True}, "metadata.labels") == (
        "metadata.labels.app: Invalid value: true: must be a string, not boolean (quote it in YAML)"
    )
    assert error(check_labels, ["a"], "x") == 'x: Invalid value: ["a"]: must be an object mapping label keys to values'


def test_null_label_value_reads_as_empty_string():
    assert check_labels({"reserved": None}, "l") == {"reserved": ""}


def test_selector_validation_errors():
    assert error(check_selector, {"matchLabelz": {}}, "spec.selector") == (
        'spec.selector: unknown field "spec.selector.matchLabelz"'
    )
    assert error(check_selector, {"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]},
                 "s") == (
        's.matchExpressions[0].operator: Unsupported value: "Equals": supported values: '
        '"DoesNotExist", "Exists", "In", "NotIn"'
    )
    assert error(check_selector, {"matchExpressions": [{"key": "a", "operator": "In"}]}, "s") == (
        "s.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
    )
    assert error(check_selector, {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]}, "s") == (
        "s.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
    )
    assert error(check_selector, {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
                 "s") == (
        "s.matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or "
        "'DoesNotExist'"
    )
    assert error(check_selector, {"matchExpressions": [{"operator": "Exists"}]}, "s") == (
        "s.matchExpressions[0].key: Required value"
    )
    assert error(check_selector, {"matchExpressions": [{"key": "a", "operator": "In", "values": ["b c"]}]},
                 "s").startswith('s.matchExpressions[0].values[0]: Invalid value: "b c"')


def selector(data) -> LabelSelector:
    return LabelSelector.from_dict(data)


def test_empty_selector_matches_everything():
    assert selector({}).matches({})
    assert selector({}).matches({"a": "b"})
    assert LabelSelector().is_empty


def test_match_labels_all_must_hold():
    s = selector({"matchLabels": {"org": "empire", "class": "deathstar"}})
    assert s.matches({"org": "empire", "class": "deathstar", "extra": "x"})
    assert not s.matches({"org": "empire"})
    assert not s.matches({"org": "alliance", "class": "deathstar"})


def test_match_label_with_empty_value_needs_the_key():
    s = selector({"matchLabels": {"flag": ""}})
    assert s.matches({"flag": ""})
    assert not s.matches({})


@pytest.mark.parametrize(
    ("operator", "values", "labels", "expected"),
    [
        ("In", ["a", "b"], {"k": "a"}, True),
        ("In", ["a", "b"], {"k": "c"}, False),
        ("In", ["a"], {}, False),
        ("NotIn", ["a"], {"k": "b"}, True),
        ("NotIn", ["a"], {"k": "a"}, False),
        ("NotIn", ["a"], {}, True),
        ("Exists", [], {"k": ""}, True),
        ("Exists", [], {}, False),
        ("DoesNotExist", [], {}, True),
        ("DoesNotExist", [], {"k": "x"}, False),
    ],
)
def test_expressions(operator, values, labels, expected):
    expr = {"key": "k", "operator": operator}
    if values:
        expr["values"] = values
    assert selector({"matchExpressions": [expr]}).matches(labels) is expected


def test_labels_and_expressions_are_anded():
    s = selector({"matchLabels": {"app": "web"},
                  "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]})
    assert s.matches({"app": "web", "tier": "fe"})
    assert not s.matches({"app": "web", "tier": "db"})
    assert not s.matches({"tier": "fe"})


def test_selector_round_trip_and_string_form():
    data = {"matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [{"key": "t", "operator": "In", "values": ["y", "x"]},
                                 {"key": "g", "operator": "DoesNotExist"}]}
    s = selector(data)
    assert LabelSelector.from_dict(s.to_dict()) == s
    assert str(s) == "a=1,b=2,t in (x,y),!g"
    assert str(Requirement("k", "Exists")) == "k"


def test_from_dict_does_not_modify_its_input():
    data = {"matchLabels": {"a": None}}
    assert selector(data).matches({"a": ""})
    assert data == {"matchLabels": {"a": None}}


def test_from_labels():
    assert LabelSelector.from_labels({"app": "web"}).matches({"app": "web", "x": "y"})


def test_parse_label_assignments():
    assert parse_label_assignments(["app=web", "tier-", "empty="]) == ({"app": "web", "empty": ""}, {"tier"})
    changes = parse_label_assignments(["a=1"])
    assert isinstance(changes, LabelChanges)
    to_set, to_remove = changes
    assert (to_set, to_remove) == ({"a": "1"}, set())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["app"], "invalid label spec 'app': expected key=value to set or key- to remove"),
        (["-"], "invalid label spec '-': expected key=value to set or key- to remove"),
        (["=v"], "invalid label '=v': key must be non-empty"),
        (["bad key=v"], "invalid label 'bad key=v': name part must consist of alphanumeric characters"),
        (["app=no good"], "invalid label 'app=no good': a valid label must be an empty string"),
        (["-x-"], "invalid label removal '-x-': name part must consist"),
        (["a=1", "a-"], "can not both modify and remove label 'a' in the same command"),
        (["a=1", "a=2"], "label 'a' given twice with different values"),
    ],
)
def test_parse_label_assignments_errors(args, message):
    assert error(parse_label_assignments, args).startswith(message)


def test_apply_label_changes():
    labels = {"app": "web", "tier": "fe"}
    changes = parse_label_assignments(["tier-", "new=1", "app=web"])
    assert apply_label_changes(labels, changes) == {"app": "web", "new": "1"}
    assert labels == {"app": "web", "tier": "fe"}
    conflicting = parse_label_assignments(["app=db"])
    assert error(apply_label_changes, labels, conflicting) == (
        "'app' already has a value (web), and --overwrite is false"
    )
    assert apply_label_changes(labels, conflicting, overwrite=True)["app"] == "db"
    assert apply_label_changes({}, parse_label_assignments(["gone-"])) == {}


def test_parse_kubectl_selector():
    s = LabelSelector.parse("app=web,tier!=db, env in (a, b),env notin (c),release,!legacy")
    assert s.to_dict() == {
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "NotIn", "values": ["db"]},
            {"key": "env", "operator": "In", "values": ["a", "b"]},
            {"key": "env", "operator": "NotIn", "values": ["c"]},
            {"key": "release", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    }
    assert str(s) == "app=web,tier!=db,env in (a,b),env!=c,release,!legacy"
    assert s.matches({"app": "web", "env": "a", "release": "1"})
    assert not s.matches({"app": "web", "env": "a", "release": "1", "legacy": "y"})
    assert not s.matches({"app": "web", "env": "a"})
    assert LabelSelector.parse("a==1") == LabelSelector.parse("a=1") == LabelSelector.from_labels({"a": "1"})
    assert LabelSelector.parse("").is_empty
    assert LabelSelector.parse("a=").matches({"a": ""})
    both = LabelSelector.parse("a=1,a=2")
    assert not both.matches({"a": "1"}) and not both.matches({"a": "2"})


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("a in ()", "a set needs at least one value"),
        ("bad key=1", "expected key=value, key!=value"),
        ("a=b c", "expected key=value, key!=value"),
        ("a in (x", "expected key=value, key!=value"),
        ("=x", "expected key=value, key!=value"),
        ("a=-x", "a valid label must be an empty string"),
        ("-a", "name part must consist"),
    ],
)
def test_parse_kubectl_selector_errors(text, why):
    msg = error(LabelSelector.parse, text)
    assert msg.startswith(f"unable to parse requirement {text!r}: ") and why in msg
