"""CNI spec versions: which ones the plugin speaks and which commands each one allows."""

from __future__ import annotations

from membrane.api.cni_errors import DECODING_FAILURE, INCOMPATIBLE_VERSION, CNIError

CURRENT_VERSION = "1.1.0"
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

# The first spec version that defines each command; ADD and DEL exist in every version.
COMMAND_FLOOR = {"CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}


def parse_version(version: str) -> tuple[int, int, int]:
    """``"1.0.0"`` -> ``(1, 0, 0)``; raises ValueError naming the bad version."""
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"invalid version {version!r}: expected MAJOR.MINOR.PATCH")
    major, minor, patch = (int(p) for p in parts)
    return major, minor, patch


def version_info() -> dict[str, object]:
    """What VERSION prints."""
    return {"cniVersion": CURRENT_VERSION, "supportedVersions": list(SUPPORTED_VERSIONS)}


def check_version(command: str, version: str) -> None:
    """Raise CNIError (code 1) when the netconf's cniVersion cannot carry ``command``.

    Mirrors libcni's skel: CHECK needs >= 0.4.0, STATUS and GC need >= 1.1.0, and the version must be one
    the plugin supports.
    """
    floor = COMMAND_FLOOR.get(command)
    if floor is not None:
        try:
            too_old = parse_version(version) < parse_version(floor)
        except ValueError as exc:
            raise CNIError(DECODING_FAILURE, str(exc)) from None
        if too_old:
            raise CNIError(INCOMPATIBLE_VERSION, f"config version does not allow {command}",
                           f"{command} needs cniVersion {floor} or later; config is {version!r}")
    if version not in SUPPORTED_VERSIONS:
        supported = " ".join(f'"{v}"' for v in SUPPORTED_VERSIONS)
        raise CNIError(INCOMPATIBLE_VERSION, "incompatible CNI versions",
                       f'config is "{version}", plugin supports [{supported}]')
