"""Command-line arguments of the resource commands, checked before the cluster store is touched.

Bad arguments are user errors: each raises a CLIError whose text is kubectl's one-line message
(``main`` prints it as ``error: …`` and exits 1), never a traceback and never a store access.
"""

from __future__ import annotations

from membrane.model import names
from membrane.model.errors import ValidationError
from membrane.model.kinds import KindInfo, lookup_kind
from membrane.model.labels import LabelSelector


class CLIError(Exception):
    """A user error: printed as ``error: <message>``, exit status 1."""


_RESOURCE_NAME_FORM = (
    "there is no need to specify a resource type as a separate argument when passing arguments in "
    "resource/name form (e.g. 'membrane get resource/<resource_name>' instead of "
    "'membrane get resource resource/<resource_name>')"
)


def check_namespace(namespace: str | None) -> None:
    """``-n NS``: a DNS-1123 label, as namespace names are."""
    if namespace is None:
        return
    if namespace == "":
        raise CLIError("a namespace must be specified (-n NAMESPACE)")
    why = names.dns1123_label_error(namespace)
    if why is not None:
        raise CLIError(f"invalid namespace {namespace!r}: {why}")


def check_name(name: str) -> None:
    """An object name on the command line: what the API server accepts as a path segment."""
    if name == "":
        raise CLIError("resource name may not be empty")
    if "/" in name:
        raise CLIError(_RESOURCE_NAME_FORM)
    if name in (".", ".."):
        raise CLIError(f"invalid resource name {name!r}: may not be '{name}'")
    if "%" in name or any(ch.isspace() or ord(ch) < 32 for ch in name):
        raise CLIError(f"invalid resource name {name!r}: may not contain '%', spaces or control characters")


def split_resource_names(kind: str | None, given: list[str]) -> tuple[str | None, list[str]]:
    """kubectl's ``KIND/NAME`` form (``get pod/web``): the kind and the names, checked.

    ``KIND NAME...`` is returned as it is (names checked); ``KIND/NAME`` with further names or a
    mix of forms is refused with kubectl's message.
    """
    if kind is not None and "/" in kind:
        if given:
            raise CLIError(_RESOURCE_NAME_FORM)
        kind, _, name = kind.partition("/")
        if not kind:
            raise CLIError("arguments in resource/name form must have a single resource and name")
        given = [name]
    for name in given:
        check_name(name)
    return kind, given


def parse_selector(text: str | None) -> LabelSelector | None:
    """``-l SELECTOR``; kubectl's ``unable to parse requirement`` message for a bad one."""
    if text is None:
        return None
    try:
        return LabelSelector.parse(text)
    except ValidationError as exc:
        raise CLIError(str(exc)) from None


def resolve_kind(name: str) -> KindInfo:
    try:
        return lookup_kind(name)
    except ValidationError as exc:
        raise CLIError(str(exc)) from None


def resource_ref(info: KindInfo) -> str:
    """How kubectl names a kind in its output: ``pod``, ``service``, ``ciliumnetworkpolicy.cilium.io``."""
    return info.plural.rstrip("s") if info.group == "core" else f"{info.kind.lower()}.{info.group}"

