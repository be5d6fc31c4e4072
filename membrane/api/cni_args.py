"""CNI_ARGS: ``K=V;K2=V2`` pairs passed by the runtime (the Kubernetes pod identity among them)."""

from __future__ import annotations

# Keys the plugin understands; any other key is an error unless IgnoreUnknown is true (libcni's rule).
KNOWN_ARGS = frozenset(
    {"IgnoreUnknown", "K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID"}
)


def parse_cni_args(s: str) -> dict[str, str]:
    """Parse ``CNI_ARGS`` into a dict; raises ValueError naming the bad pair.

    ``""`` gives ``{}``. Empty segments (a trailing ``;``) are skipped. Each other segment must be
    ``KEY=VALUE`` with exactly one ``=`` and a non-empty key; a repeated key is an error.
    """
    result: dict[str, str] = {}
    if not s:
        return result
    for index, pair in enumerate(s.split(";")):
        if pair == "":
            continue
        if pair.count("=") != 1:
            raise ValueError(f"CNI_ARGS pair {index + 1} {pair!r}: expected exactly one '=' (KEY=VALUE)")
        key, value = pair.split("=")
        if not key:
            raise ValueError(f"CNI_ARGS pair {index + 1} {pair!r}: empty key")
        if key in result:
            raise ValueError(f"CNI_ARGS pair {index + 1} {pair!r}: key {key!r} given twice")
        result[key] = value
    return result


def parse_bool_arg(key: str, value: str) -> bool:
    """libcni's UnmarshallableBool: ``1``/``true`` and ``0``/``false`` (case-insensitive)."""
    lowered = value.lower()
    if lowered in ("1", "true"):
        return True
    if lowered in ("0", "false"):
        return False
    raise ValueError(f"CNI_ARGS {key}={value!r}: expected true, false, 1 or 0")


def check_known_args(args: dict[str, str]) -> None:
    """Raise ValueError listing unknown keys, unless ``IgnoreUnknown`` is true."""
    ignore = parse_bool_arg("IgnoreUnknown", args["IgnoreUnknown"]) if "IgnoreUnknown" in args else False
    unknown = sorted(k for k in args if k not in KNOWN_ARGS)
    if unknown and not ignore:
        raise ValueError(f"CNI_ARGS: unknown args {unknown} (set IgnoreUnknown=1 to ignore them)")
