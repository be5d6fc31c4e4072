"""Reading manifests: multi-document YAML (and JSON) into JSON-like dicts, each with its location.

Documents are numbered from 1 in the order the user sees them between ``---`` separators; empty
documents are skipped but still counted, so ``demo.yaml:doc 3`` is the third document in the file.
A ``kind: List`` document contributes its ``items`` (located as ``doc N: items[i]``).

YAML is read strictly, like ``kubectl``: duplicate keys are an error, dates stay strings, and
non-string keys become strings (``80: x`` -> ``"80"``). Every error is a ValidationError that
names the source, the document and, for syntax errors, the line and column.

Hostile input is refused before it costs time or memory: anchors and aliases may add at most
``ALIAS_EXPANSION_BUDGET`` values to a document (go-yaml, which kubectl uses, refuses "excessive
aliasing" the same way; a 561-byte "billion laughs" document would otherwise expand to 10^9
values), an alias may not refer to a node that contains it, and documents nest at most
``MAX_DEPTH`` levels (deeper input would exhaust Python's recursion limit).

``load_paths`` is the one place in ``membrane.model`` that touches files (``-f FILE|DIR|-``); it
does nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from membrane.model.errors import ValidationError

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN_SOURCE = "<stdin>"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"
# Values that aliases may add to one document beyond those written out. A `<<: *defaults` merge
# or a repeated selector adds a handful; an alias bomb adds millions.
ALIAS_EXPANSION_BUDGET = 10_000
MAX_DEPTH = 100  # real manifests nest about 15 levels; CRD schemas about 40


@dataclass(frozen=True)
class Located:
    """One manifest and where it came from."""

    obj: dict[str, Any]
    source: str
    doc: int  # 1-based document number within the source
    item: int | None = None  # index in a `kind: List`'s items

    @property
    def where(self) -> str:
        """The prefix of every error about this manifest: ``demo.yaml:doc 2`` (``…: items[0]``)."""
        base = f"{self.source}:doc {self.doc}"
        return base if self.item is None else f"{base}: items[{self.item}]"

    def __iter__(self) -> Iterator[Any]:
        """``where, obj = located`` (what ``validate_object(obj, where)`` needs)."""
        return iter((self.where, self.obj))


def _key_text(key: Any) -> str:
    """Mapping keys as JSON needs them (what sigs.k8s.io/yaml does with ints, bools and null)."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, int | float):
        return str(key)
    raise TypeError(type(key).__name__)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_aliases(root: yaml.Node) -> None:
    """Refuse a composed document whose aliases expand it too much, or that refers to itself.

    Aliased nodes are shared objects in the composed graph; this counts the values the graph
    would expand to (each node once, memoised), iteratively, without building the expansion.
    """
    expanded: dict[int, int] = {}  # id(node) -> number of values it expands to
    entered: set[int] = set()  # nodes on the current path (entered, not yet counted)
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            entered.discard(key)
            expanded[key] = 1 + sum(expanded[id(c)] for c in _children(node))
            if expanded[key] > len(expanded) + ALIAS_EXPANSION_BUDGET:
                raise yaml.composer.ComposerError(
                    None, None,
                    f"document contains excessive aliasing: its anchors and aliases expand it by more "
                    f"than {ALIAS_EXPANSION_BUDGET} values", node.start_mark,
                )
            continue
        if key in expanded:
            continue
        entered.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in entered:
                raise yaml.composer.ComposerError(
                    None, None, "an alias refers to a node that contains it (a recursive alias)", child.start_mark,
                )
            if id(child) not in expanded:
                stack.append((child, False))


class _ManifestLoader(yaml.SafeLoader):
    """SafeLoader without implicit timestamps, rejecting duplicate keys, stringifying keys, and
    refusing alias bombs, recursive aliases and absurd nesting."""

    yaml_implicit_resolvers = {
        first: [r for r in resolvers if r[0] != _TIMESTAMP_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:  # type: ignore[override]
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, IndexError, KeyError, TypeError, AttributeError, OverflowError) as err:
            # PyYAML's scalar constructors trust the tag: `!!int ""` is an IndexError, `!!bool x` a
            # KeyError, `!!timestamp x` an AttributeError, a 5000-digit int a ValueError: a bad value, reported so.
            value = node.value if isinstance(node, yaml.ScalarNode) else ""
            shown = value if len(value) <= 40 else value[:40] + "…"
            tag = node.tag.removeprefix("tag:yaml.org,2002:")
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {json.dumps(shown)} as {tag} ({type(err).__name__}: {err})"[:300],
                node.start_mark,
            ) from None

    def compose_document(self) -> yaml.Node:  # type: ignore[override]
        node = super().compose_document()
        _check_aliases(node)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[str, Any]:  # type: ignore[override]
        seen: dict[str, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(node, key_node, deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {json.dumps(key)}", key_node.start_mark,
                )
            seen[key] = key_node
        self.flatten_mapping(node)
        return {self._key(node, k, deep): self.construct_object(v, deep=deep) for k, v in node.value}

    def _key(self, node: yaml.Node, key_node: yaml.Node, deep: bool) -> str:
        key = self.construct_object(key_node, deep=deep)
        try:
            return _key_text(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found a {type(key).__name__} used as a key; keys must be strings", key_node.start_mark,
            ) from None


def _check_json_like(value: Any, where: str, path: str = "", depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise ValidationError(f"nested more than {MAX_DEPTH} levels deep", f"{where}: {path}" if path else where)
    if isinstance(value, dict):
        for k, v in value.items():
            _check_json_like(v, where, f"{path}.{k}" if path else k, depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_json_like(v, where, f"{path}[{i}]", depth + 1)
    elif not (value is None or isinstance(value, str | int | float | bool)):
        raise ValidationError(
            f"unsupported YAML value of type {type(value).__name__} (only strings, numbers, booleans, "
            "lists and mappings)", f"{where}: {path}" if path else where,
        )


def _yaml_error(err: yaml.YAMLError, where: str) -> ValidationError:
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "invalid YAML"
        context = f" ({err.context})" if err.context and err.problem else ""
        if mark is not None:
            return ValidationError(
                f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}{context}", where
            )
        return ValidationError(f"invalid YAML: {problem}{context}", where)
    return ValidationError(f"invalid YAML: {err}", where)


def _raw_documents(text: str, source: str) -> Iterator[tuple[int, Any]]:
    """(document number, parsed value) for every YAML document, empty ones included."""
    number = 0
    stream = yaml.load_all(text, Loader=_ManifestLoader)  # a SafeLoader subclass: no arbitrary objects
    while True:
        try:
            value = next(stream)
        except StopIteration:
            return
        except yaml.YAMLError as err:
            raise _yaml_error(err, f"{source}:doc {number + 1}") from None
        except ValueError as err:  # PyYAML's int(): "Exceeds the limit (4300 digits) …"
            raise ValidationError(f"invalid YAML: {err}", f"{source}:doc {number + 1}") from None
        number += 1
        yield number, value


def _expand(value: Any, source: str, number: int) -> list[Located]:
    where = f"{source}:doc {number}"
    if value is None:
        return []
    if not isinstance(value, dict):
        kind = {list: "a list", str: "a string"}.get(type(value), f"a {type(value).__name__}")
        raise ValidationError(f"a manifest must be a mapping with apiVersion and kind, not {kind}", where)
    _check_json_like(value, where)
    if value.get("kind") != "List":
        return [Located(value, source, number)]
    items = value.get("items") or []
    if not isinstance(items, list):
        raise ValidationError("Invalid value: items of a List must be a list", f"{where}: items")
    located = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValidationError("a manifest must be a mapping with apiVersion and kind", f"{where}: items[{i}]")
        located.append(Located(item, source, number, i))
    return located


def load_located(text: str, source: str) -> list[Located]:
    """Every manifest in a YAML (or JSON) text, with its location; empty documents skipped."""
    located: list[Located] = []
    for number, value in _raw_documents(text, source):
        located.extend(_expand(value, source, number))
    return located


def load_documents(text: str, source: str) -> list[dict[str, Any]]:
    """Every manifest in a YAML text as a dict (``kind: List`` expanded, empty documents skipped)."""
    return [doc.obj for doc in load_located(text, source)]


def load_json(text: str, source: str) -> list[Located]:
    """A ``.json`` file: one object (or a ``kind: List``); errors carry line and column."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValidationError(
            f"invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}", f"{source}:doc 1"
        ) from None
    except ValueError as err:  # an integer of more than 4300 digits
        raise ValidationError(f"invalid JSON: {err}", f"{source}:doc 1") from None
    except RecursionError:
        raise ValidationError(f"invalid JSON: nested more than {MAX_DEPTH} levels deep", f"{source}:doc 1") from None
    return _expand(value, source, 1)


def decode_text(data: bytes, source: str) -> str:
    """Manifest bytes as text (UTF-8, BOM allowed); ValidationError naming the source otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValidationError(f"not UTF-8 text (invalid byte at offset {err.start})", source) from None


def load_text(text: str, source: str) -> list[Located]:
    """A manifest's text: JSON when the source ends in .json, else multi-document YAML."""
    if source.lower().endswith(".json"):
        return load_json(text, source)
    return load_located(text, source)
