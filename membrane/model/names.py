"""Name syntaxes Kubernetes uses (RFC 1123/1035 names, IANA service names, qualified names).

Each checker returns ``None`` for a valid name, or the reason it is not one (a sentence that can follow
``Invalid value: "x": ``). They never raise, so callers decide which field to blame.
"""

from __future__ import annotations

import re

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(rf"^{_LABEL}$")
_DNS1123_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_IANA_CHARS = re.compile(r"^[-a-z0-9]+$")

LABEL_MAX = 63
SUBDOMAIN_MAX = 253
IANA_SVC_NAME_MAX = 15


def dns1123_label_error(name: str) -> str | None:
    """Names of namespaces, containers, service ports: ``my-name``, ``123-abc``."""
    if len(name) > LABEL_MAX:
        return f"must be no more than {LABEL_MAX} characters"
    if not _DNS1123_LABEL.match(name):
        return (
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
            "and must start and end with an alphanumeric character (e.g. 'my-name' or '123-abc')"
        )
    return None


def dns1123_subdomain_error(name: str) -> str | None:
    """Names of most objects (pods, deployments, policies, nodes): ``example.com``."""
    if len(name) > SUBDOMAIN_MAX:
        return f"must be no more than {SUBDOMAIN_MAX} characters"
    if not _DNS1123_SUBDOMAIN.match(name):
        return (
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'example.com')"
        )
    return None


def dns1035_label_error(name: str) -> str | None:
    """Service names: a DNS label that starts with a letter (``my-name``, ``abc-123``)."""
    if len(name) > LABEL_MAX:
        return f"must be no more than {LABEL_MAX} characters"
    if not _DNS1035_LABEL.match(name):
        return (
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
            "alphabetic character, and end with an alphanumeric character (e.g. 'my-name' or 'abc-123')"
        )
    return None


def iana_svc_name_error(name: str) -> str | None:
    """Port names (container ports, named target ports): ``http``, ``dns-tcp``; at most 15 characters."""
    if len(name) > IANA_SVC_NAME_MAX:
        return f"must be no more than {IANA_SVC_NAME_MAX} characters"
    if not _IANA_CHARS.match(name):
        return "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"
    if "--" in name:
        return "must not contain consecutive hyphens"
    if not any("a" <= c <= "z" for c in name):
        return "must contain at least one letter (a-z)"
    if name.startswith("-") or name.endswith("-"):
        return "must not begin or end with a hyphen"
    return None


def _qualified_part_error(part: str, what: str) -> str | None:
    if not part:
        return f"{what} must be non-empty"
    if len(part) > LABEL_MAX:
        return f"{what} must be no more than {LABEL_MAX} characters"
    if not _QUALIFIED_PART.match(part):
        return (
            f"{what} must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character (e.g. 'MyName', 'my.name' or '123-abc')"
        )
    return None


def qualified_name_error(name: str) -> str | None:
    """Label and annotation keys: ``[prefix/]name`` with an optional DNS subdomain prefix."""
    prefix, slash, rest = name.rpartition("/")
    if slash:
        if not prefix:
            return "prefix part must be non-empty"
        if "/" in prefix:
            return "a qualified name may contain at most one '/'"
        why = dns1123_subdomain_error(prefix)
        if why is not None:
            return f"prefix part {why}"
    return _qualified_part_error(rest, "name part")


def label_value_error(value: str) -> str | None:
    """Label values: empty, or up to 63 characters of ``[A-Za-z0-9_.-]`` starting/ending alphanumeric."""
    if value == "":
        return None
    if len(value) > LABEL_MAX:
        return f"must be no more than {LABEL_MAX} characters"
    if not _QUALIFIED_PART.match(value):
        return (
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'MyValue', 'my_value' or '12345')"
        )
    return None
