"""Container images the lab knows, and the argv that stands in for a container of one.

Kubernetes semantics: a pod's ``command`` replaces the image's ENTRYPOINT and ``args`` its CMD; with only
``args`` they go to the image's entrypoint; ``$(VAR)`` in either expands from the container's env. The
resulting image-side argv is then mapped to the host: the image's own programs (``/agnhost``, ``/whoami``,
``nginx`` …) become ``python -m membrane.lab.workloads.<module>``, anything else (``sleep``, ``sh -c …``) runs
as the host program of that name. An image whose default is an interactive shell idles instead.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

MODULE_PREFIX = "membrane.lab.workloads."
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
_REGISTRY = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ImageError(ValueError):
    """The image cannot run; ``reason`` is the pod status reason a kubelet shows, ``str()`` its message."""

    reason = "CreateContainerError"


class InvalidImageName(ImageError):
    reason = "InvalidImageName"


class UnknownImage(ImageError):
    reason = "ErrImagePull"


@dataclass(frozen=True)
class ImageRef:
    """A normalised image reference: ``nginx:1.25`` is docker.io / library/nginx, tag 1.25."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The short form people write: ``nginx``, ``traefik/whoami``, ``registry.k8s.io/pause``."""
        if self.registry == "docker.io":
            return self.repository.removeprefix("library/")
        return f"{self.registry}/{self.repository}"


@dataclass(frozen=True)
class ImageSpec:
    """What a built-in image runs. ``programs``: image binary name -> (module, extra leading args);
    ``shims``: entrypoint scripts that run their arguments (``exec "$@"``), ``curl`` adding curl for flags."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    programs: Mapping[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    shims: Mapping[str, str] = field(default_factory=dict)
    idle_by_default: bool = False


_NGINX = {"nginx": ("nginx", ()), "nginx-debug": ("nginx", ())}
_SPECS: Mapping[str, ImageSpec] = MappingProxyType({
    "traefik/whoami": ImageSpec(entrypoint=("/whoami",), programs={"whoami": ("whoami", ())}),
    "nginx": ImageSpec(("/docker-entrypoint.sh",), ("nginx", "-g", "daemon off;"), _NGINX,
                       {"/docker-entrypoint.sh": "exec"}),
    "nginxinc/nginx-unprivileged": ImageSpec(
        ("/docker-entrypoint.sh",), ("nginx", "-g", "daemon off;"),
        {"nginx": ("nginx", ("--port", "8080")), "nginx-debug": ("nginx", ("--port", "8080"))},
        {"/docker-entrypoint.sh": "exec"},
    ),
    "registry.k8s.io/e2e-test-images/agnhost": ImageSpec(
        ("/agnhost",), ("pause",), {"agnhost": ("agnhost", ()), "agnhost-2": ("agnhost", ())}
    ),
    "quay.io/cilium/json-mock": ImageSpec(entrypoint=("/run.sh",), programs={"run.sh": ("jsonmock", ())}),
    "quay.io/cilium/starwars": ImageSpec(entrypoint=("/deathstar",), programs={"deathstar": ("starwars", ())}),
    "nicolaka/netshoot": ImageSpec(cmd=("zsh",), idle_by_default=True),
    "busybox": ImageSpec(cmd=("sh",), idle_by_default=True),
    "curlimages/curl": ImageSpec(("/entrypoint.sh",), ("curl",), shims={"/entrypoint.sh": "curl"},
                                 idle_by_default=True),
    "alpine": ImageSpec(cmd=("/bin/sh",), idle_by_default=True),
    "ubuntu": ImageSpec(cmd=("/bin/bash",), idle_by_default=True),
    "debian": ImageSpec(cmd=("bash",), idle_by_default=True),
    "registry.k8s.io/pause": ImageSpec(entrypoint=("/pause",), programs={"pause": ("idle", ())}),
    # Kafka brokers of Cilium's Kafka guides: the lab's single-node broker (membrane.lab.workloads.kafka)
    "wurstmeister/kafka": ImageSpec(entrypoint=("start-kafka.sh",), programs={"start-kafka.sh": ("kafka", ())}),
    "spotify/kafkaproxy": ImageSpec(entrypoint=("supervisord", "-n"), programs={"supervisord": ("kafka", ())}),
    # Cluster DNS: the lab's DNS workload stands in for CoreDNS (the pod's ``-conf`` is ignored, the lab
    # comes from $MEMBRANE_LAB).
    "registry.k8s.io/coredns/coredns": ImageSpec(entrypoint=("/coredns",), programs={"coredns": ("dns", ())}),
})
# Other names of the same images (old registries, mirrors, the image's previous home).
_ALIASES: Mapping[str, str] = MappingProxyType({
    "containous/whoami": "traefik/whoami",
    "registry.k8s.io/e2e-test-images/nginx": "nginx",
    "k8s.gcr.io/e2e-test-images/nginx": "nginx",
    "k8s.gcr.io/e2e-test-images/agnhost": "registry.k8s.io/e2e-test-images/agnhost",
    "gcr.io/kubernetes-e2e-test-images/agnhost": "registry.k8s.io/e2e-test-images/agnhost",
    "cilium/json-mock": "quay.io/cilium/json-mock",
    "cilium/starwars": "quay.io/cilium/starwars",
    "ghcr.io/nicolaka/netshoot": "nicolaka/netshoot",
    "registry.k8s.io/e2e-test-images/busybox": "busybox",
    "k8s.gcr.io/e2e-test-images/busybox": "busybox",
    "quay.io/curl/curl": "curlimages/curl",
    "k8s.gcr.io/pause": "registry.k8s.io/pause",
    "coredns/coredns": "registry.k8s.io/coredns/coredns",
    "k8s.gcr.io/coredns/coredns": "registry.k8s.io/coredns/coredns",
    "k8s.gcr.io/coredns": "registry.k8s.io/coredns/coredns",
})


def parse_image(image: str) -> ImageRef:
    """Normalise ``[registry/]path[:tag][@digest]``; InvalidImageName saying what is wrong."""
    def invalid(why: str) -> InvalidImageName:
        return InvalidImageName(f'couldn\'t parse image reference "{image}": invalid reference format: {why}')

    if not isinstance(image, str) or not image:
        raise InvalidImageName("image name must not be empty")
    rest, digest = image, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise invalid(f"bad digest {digest!r}")
    tag = None
    last_slash = rest.rfind("/")
    if rest.rfind(":") > last_slash:
        rest, tag = rest.rsplit(":", 1)
        if not _TAG.match(tag):
            raise invalid(f"bad tag {tag!r}")
    parts = rest.split("/")
    registry = "docker.io"
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry = parts.pop(0)
        if not _REGISTRY.match(registry):
            raise invalid(f"bad registry {registry!r}")
    if registry == "index.docker.io":
        registry = "docker.io"
    for component in parts:
        if not _COMPONENT.match(component):
            lowered = component.lower()
            raise invalid("repository name must be lowercase" if _COMPONENT.match(lowered) else
                          f"bad path component {component!r}")
    if registry == "docker.io" and len(parts) == 1:
        parts.insert(0, "library")
    return ImageRef(registry, "/".join(parts), tag, digest)


def known_images() -> list[str]:
    """The built-in images by their usual names."""
    return list(_SPECS)


def spec_for(image: str) -> ImageSpec:
    """The built-in image behind ``image`` (any tag or digest); UnknownImage if there is none."""
    name = parse_image(image).name
    spec = _SPECS.get(_ALIASES.get(name, name))
    if spec is None:
        raise UnknownImage(f'image "{image}": not a built-in lab image (known: {", ".join(_SPECS)})')
    return spec


IDLE_ARGV = ("sleep", "infinity")


def resolve(image: str, command: list[str] | None, args: list[str] | None,
            env: Mapping[str, str] | None = None) -> list[str]:
    """The host argv that runs a container of ``image`` with the pod's ``command`` and ``args``."""
    spec = spec_for(image)
    variables = dict(env or {})
    command = [expand(str(a), variables) for a in command] if command else None
    args = [expand(str(a), variables) for a in args] if args else None
    if command is None and args is None and spec.idle_by_default:
        # A shell image with nothing to run idles; coreutils' sleep costs no interpreter start.
        return list(IDLE_ARGV)
    if command is not None:
        argv = command + (args or [])
    else:
        argv = list(spec.entrypoint) + (args if args is not None else list(spec.cmd))
    if not argv:
        raise ImageError(f'image "{image}": no command specified (the image has no entrypoint or default command)')
    return _host_argv(spec, argv, set())


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined variables are substituted, ``$$`` is a literal ``$``,
    references to undefined variables stay as written."""
    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(substitute, value)


def _host_argv(spec: ImageSpec, argv: list[str], seen_shims: set[str]) -> list[str]:
    program, rest = argv[0], argv[1:]
    shim = spec.shims.get(program)
    if shim is not None and program not in seen_shims:
        if shim == "curl" and (not rest or rest[0].startswith("-")):
            rest = ["curl", *rest]
        if not rest:
            return ["true"]  # `exec "$@"` with nothing to run: the container exits 0
        return _host_argv(spec, rest, seen_shims | {program})
    builtin = spec.programs.get(program.rsplit("/", 1)[-1])
    if builtin is not None:
        module, leading = builtin
        return [*_module(module), *leading, *rest]
    return list(argv)


def _module(name: str) -> list[str]:
    return [sys.executable, "-m", MODULE_PREFIX + name]
