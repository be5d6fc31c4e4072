"""The identity-relevant label filter (cilium-semantics §1.3).

A rule is a key-prefix regex anchored at the start of the label key, optionally bound to one label
source, and either an include or an exclude (``!``). Per label: ``included`` is the length of the
longest matching include rule, ``ignored`` the length of the shortest matching exclude rule. The label
is kept when ``(no user include rules AND nothing excluded it) OR included > ignored``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from membrane.identity.labels import SOURCE_ANY, SOURCES, Label, LabelSet

# The default rules, in Cilium's order: (source or "" for any, key-prefix regex, exclude).
DEFAULT_RULES: tuple[str, ...] = (
    r"reserved:.*",
    r"io\.kubernetes\.pod\.namespace",
    r"io\.cilium\.k8s\.namespace\.labels",
    r"app\.kubernetes\.io",
    r"io\.cilium\.k8s\.policy\.cluster",
    r"io\.cilium\.k8s\.policy\.serviceaccount",
    r"!io\.kubernetes",
    r"!kubernetes\.io",
    r"!statefulset\.kubernetes\.io/pod-name",
    r"!apps\.kubernetes\.io/pod-index",
    r"!batch\.kubernetes\.io/job-completion-index",
    r"!batch\.kubernetes\.io/controller-uid",
    r"!controller-uid",
    r"!topology\.kubernetes\.io",
    r"!.*beta\.kubernetes\.io",
    r"!k8s\.io",
    r"!pod-template-generation",
    r"!pod-template-hash",
    r"!controller-revision-hash",
    r"!annotation.*",
    r"!etcd_node",
)


@dataclass(frozen=True)
class FilterRule:
    """One rule: ``[source:][!]regex``; ``source`` empty means any source."""

    pattern: str
    exclude: bool = False
    source: str = ""
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "regex", re.compile(self.pattern))
        except re.error as err:
            raise ValueError(f"label filter rule {self.pattern!r}: invalid regex: {err}") from None

    @classmethod
    def parse(cls, text: str) -> FilterRule:
        """``reserved:.*``, ``k8s:!foo``, ``!io\\.kubernetes``, ``app``; ``any:`` is the same as no source."""
        source, colon, rest = text.partition(":")
        if colon and source in SOURCES:
            body = rest
        else:
            source, body = "", text
        if source == SOURCE_ANY:
            source = ""
        exclude = body.startswith("!")
        pattern = body[1:] if exclude else body
        if not pattern:
            raise ValueError(f"label filter rule {text!r}: empty pattern")
        return cls(pattern, exclude, source)

    def matches(self, label: Label) -> bool:
        if self.source and self.source != label.source:
            return False
        return self.regex.match(label.key) is not None

    @property
    def length(self) -> int:
        return len(self.pattern)


@dataclass(frozen=True)
class LabelFilter:
    """Default rules plus optional user rules (Helm ``labels`` / ``--labels``)."""

    rules: tuple[FilterRule, ...]
    user_includes: bool = False

    @classmethod
    def default(cls) -> LabelFilter:
        return cls.from_config(())

    @classmethod
    def from_config(cls, user_rules: Iterable[str]) -> LabelFilter:
        """The default rules plus ``user_rules``; any user include switches to allow-list mode."""
        user = [FilterRule.parse(text) for text in user_rules]
        rules = tuple(FilterRule.parse(text) for text in DEFAULT_RULES) + tuple(user)
        return cls(rules, any(not rule.exclude for rule in user))

    def relevant(self, label: Label) -> bool:
        included = 0
        ignored = 0
        for rule in self.rules:
            if not rule.matches(label):
                continue
            if rule.exclude:
                ignored = rule.length if ignored == 0 else min(ignored, rule.length)
            else:
                included = max(included, rule.length)
        return (not self.user_includes and ignored == 0) or included > ignored

    def apply(self, labels: Iterable[Label]) -> LabelSet:
        """The identity-relevant subset."""
        return LabelSet(lbl for lbl in labels if self.relevant(lbl))

    def split(self, labels: Iterable[Label]) -> tuple[LabelSet, LabelSet]:
        """(identity-relevant, informational)."""
        keep: list[Label] = []
        drop: list[Label] = []
        for lbl in labels:
            (keep if self.relevant(lbl) else drop).append(lbl)
        return LabelSet(keep), LabelSet(drop)
