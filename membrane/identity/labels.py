"""Cilium labels: ``Label(source, key, value)``, the sorted hashable ``LabelSet`` and pod/CIDR label sets.

String forms: ``k8s:app=web``, ``reserved:host`` (empty value: no ``=``), ``$host`` is shorthand for
``reserved:host``; text without a known source reads as ``unspec``. A ``LabelSet``'s canonical form is
the sorted ``source:key=value;`` concatenation (cilium-semantics §1.7); its sha256 names the set in the
store.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from membrane.identity.labelfilter import LabelFilter

SOURCE_K8S = "k8s"
SOURCE_CONTAINER = "container"
SOURCE_RESERVED = "reserved"
SOURCE_CIDR = "cidr"
SOURCE_CIDRGROUP = "cidrgroup"
SOURCE_FQDN = "fqdn"
SOURCE_NODE = "node"
SOURCE_UNSPEC = "unspec"
SOURCE_ANY = "any"
SOURCES = (
    SOURCE_K8S, SOURCE_CONTAINER, SOURCE_RESERVED, SOURCE_CIDR, SOURCE_CIDRGROUP, SOURCE_FQDN, SOURCE_NODE,
    SOURCE_UNSPEC, SOURCE_ANY, "cni", "gen", "directory",
)

POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
POD_NAME_LABEL = "io.kubernetes.pod.name"
NAMESPACE_LABELS_PREFIX = "io.cilium.k8s.namespace.labels."
SERVICE_ACCOUNT_LABEL = "io.cilium.k8s.policy.serviceaccount"
CLUSTER_LABEL = "io.cilium.k8s.policy.cluster"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
DEFAULT_CLUSTER = "default"
DEFAULT_SERVICE_ACCOUNT = "default"


@dataclass(frozen=True, order=True)
class Label:
    """One label; ``value`` is empty for presence-only labels such as ``reserved:host``."""

    source: str
    key: str
    value: str = ""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"label {self.key!r}: unknown source {self.source!r} (known: {', '.join(SOURCES)})")
        if not self.key:
            raise ValueError(f"label of source {self.source!r}: the key must not be empty")

    def __str__(self) -> str:
        return f"{self.source}:{self.key}={self.value}" if self.value else f"{self.source}:{self.key}"

    @classmethod
    def parse(cls, text: str, default_source: str = SOURCE_UNSPEC) -> Label:
        """``k8s:app=web`` / ``reserved:host`` / ``$host`` / ``app=web`` (source ``default_source``)."""
        if text.startswith("$"):
            return cls(SOURCE_RESERVED, *_split_value(text[1:]))
        source, colon, rest = text.partition(":")
        if colon and source in SOURCES:
            return cls(source, *_split_value(rest))
        return cls(default_source, *_split_value(text))

    def matches(self, other: Label) -> bool:
        """Selector semantics: ``self`` (a selector label) matches ``other``; ``any`` matches every source."""
        if self.source not in (SOURCE_ANY, other.source):
            return False
        if self.source == SOURCE_CIDR and other.source == SOURCE_CIDR:
            return _cidr_contains(self.key, other.key)
        return self.key == other.key and self.value == other.value


def _split_value(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    return key, value


def _cidr_contains(outer: str, inner: str) -> bool:
    try:
        a = ipaddress.ip_network(outer.replace("-", ":"), strict=False)
        b = ipaddress.ip_network(inner.replace("-", ":"), strict=False)
    except ValueError:
        return outer == inner
    return a.version == b.version and b.subnet_of(a)  # type: ignore[arg-type]


class LabelSet:
    """An immutable, sorted, de-duplicated set of labels; hashable and comparable by content."""

    __slots__ = ("_labels", "_hash")

    def __init__(self, labels: Iterable[Label | str] = ()) -> None:
        parsed = {lbl if isinstance(lbl, Label) else Label.parse(lbl) for lbl in labels}
        self._labels: tuple[Label, ...] = tuple(sorted(parsed, key=str))
        self._hash = hash(self._labels)

    @classmethod
    def of(cls, source: str, mapping: Mapping[str, str]) -> LabelSet:
        """Labels of one source from a ``key -> value`` map (e.g. pod labels as ``k8s:``)."""
        return cls(Label(source, k, v or "") for k, v in mapping.items())

    @classmethod
    def from_strings(cls, texts: Iterable[str]) -> LabelSet:
        return cls(Label.parse(t) for t in texts)

    def __iter__(self) -> Iterator[Label]:
        return iter(self._labels)

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            item = Label.parse(item)
        return item in self._labels

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelSet) and self._labels == other._labels

    def __hash__(self) -> int:
        return self._hash

    def __or__(self, other: Iterable[Label | str]) -> LabelSet:
        return LabelSet([*self._labels, *other])

    def __repr__(self) -> str:
        return f"LabelSet({self.strings()!r})"

    def strings(self) -> list[str]:
        """``["k8s:app=web", "reserved:host", …]`` in canonical order."""
        return [str(lbl) for lbl in self._labels]

    def canonical(self) -> str:
        """``source:key=value;`` per label, sorted: the text the identity key is derived from."""
        return "".join(f"{lbl.source}:{lbl.key}={lbl.value};" for lbl in self._labels)

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()

    def has(self, source: str, key: str) -> bool:
        return any(lbl.source == source and lbl.key == key for lbl in self._labels)

    def get(self, key: str, source: str | None = None) -> str | None:
        """The value of ``key`` (from ``source`` if given), or None when absent."""
        for lbl in self._labels:
            if lbl.key == key and (source is None or lbl.source == source):
                return lbl.value
        return None

    def by_source(self, source: str) -> LabelSet:
        return LabelSet(lbl for lbl in self._labels if lbl.source == source)

    def to_dict(self) -> dict[str, str]:
        """The CiliumIdentity ``security-labels`` shape: ``{"k8s:app": "web", "reserved:host": ""}``."""
        return {f"{lbl.source}:{lbl.key}": lbl.value for lbl in self._labels}

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> LabelSet:
        out = []
        for key, value in data.items():
            lbl = Label.parse(key)
            out.append(Label(lbl.source, lbl.key, value or ""))
        return cls(out)


def endpoint_labels(
    pod_labels: Mapping[str, str], namespace: str, namespace_labels: Mapping[str, str],
    service_account: str = DEFAULT_SERVICE_ACCOUNT, cluster: str = DEFAULT_CLUSTER, pod_name: str | None = None,
) -> LabelSet:
    """Every label an endpoint gets (§1.2), informational ones included (pod name when given).

    Kubernetes always gives a namespace ``kubernetes.io/metadata.name=<ns>``; it is added when missing.
    """
    ns_labels = dict(namespace_labels)
    ns_labels.setdefault(NAMESPACE_NAME_LABEL, namespace)
    out = [Label(SOURCE_K8S, k, v or "") for k, v in pod_labels.items()]
    out.append(Label(SOURCE_K8S, POD_NAMESPACE_LABEL, namespace))
    out.extend(Label(SOURCE_K8S, NAMESPACE_LABELS_PREFIX + k, v or "") for k, v in ns_labels.items())
    out.append(Label(SOURCE_K8S, SERVICE_ACCOUNT_LABEL, service_account or DEFAULT_SERVICE_ACCOUNT))
    out.append(Label(SOURCE_K8S, CLUSTER_LABEL, cluster))
    if pod_name:
        out.append(Label(SOURCE_K8S, POD_NAME_LABEL, pod_name))
    return LabelSet(out)


def pod_identity_labels(
    pod_labels: Mapping[str, str], namespace: str, namespace_labels: Mapping[str, str],
    service_account: str = DEFAULT_SERVICE_ACCOUNT, cluster: str = DEFAULT_CLUSTER,
    label_filter: LabelFilter | None = None,
) -> LabelSet:
    """The identity-relevant labels of a pod: :func:`endpoint_labels` through the filter (default rules)."""
    from membrane.identity.labelfilter import LabelFilter  # the filter module builds on this one

    flt = label_filter or LabelFilter.default()
    return flt.apply(endpoint_labels(pod_labels, namespace, namespace_labels, service_account, cluster))


def cidr_label_key(prefix: str) -> str:
    """The key of a ``cidr:`` label: the normalized prefix, IPv6 colons written as ``-``."""
    net = ipaddress.ip_network(prefix, strict=False)
    return str(net).replace(":", "-")


def cidr_label(prefix: str) -> Label:
    return Label(SOURCE_CIDR, cidr_label_key(prefix))
