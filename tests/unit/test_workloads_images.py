"""Image references and the argv a pod's container runs as (membrane.lab.workloads.images)."""

from __future__ import annotations

import sys

import pytest

from membrane.lab.workloads.images import (
    ImageRef,
    InvalidImageName,
    UnknownImage,
    expand,
    known_images,
    parse_image,
    resolve,
)

PY = [sys.executable, "-m"]


def mod(name: str) -> list[str]:
    return [*PY, f"membrane.lab.workloads.{name}"]


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("nginx", ImageRef("docker.io", "library/nginx")),
        ("nginx:1.25-alpine", ImageRef("docker.io", "library/nginx", "1.25-alpine")),
        ("docker.io/library/nginx:latest", ImageRef("docker.io", "library/nginx", "latest")),
        ("index.docker.io/traefik/whoami:v1.10", ImageRef("docker.io", "traefik/whoami", "v1.10")),
        ("traefik/whoami:v1.10", ImageRef("docker.io", "traefik/whoami", "v1.10")),
        ("busybox@sha256:" + "ab" * 32, ImageRef("docker.io", "library/busybox", None, "sha256:" + "ab" * 32)),
        (
            "quay.io/cilium/json-mock:v1.3.8@sha256:" + "0" * 64,
            ImageRef("quay.io", "cilium/json-mock", "v1.3.8", "sha256:" + "0" * 64),
        ),
        ("registry.k8s.io/e2e-test-images/agnhost:2.47",
         ImageRef("registry.k8s.io", "e2e-test-images/agnhost", "2.47")),
        ("localhost:5000/team/app:1", ImageRef("localhost:5000", "team/app", "1")),
    ],
)
def test_parse_image_normalises(image: str, expected: ImageRef) -> None:
    assert parse_image(image) == expected


def test_short_names() -> None:
    assert parse_image("docker.io/library/nginx:1").name == "nginx"
    assert parse_image("traefik/whoami").name == "traefik/whoami"
    assert parse_image("registry.k8s.io/pause:3.9").name == "registry.k8s.io/pause"


@pytest.mark.parametrize(
    ("image", "fragment"),
    [
        ("", "must not be empty"),
        ("Nginx", "repository name must be lowercase"),
        ("nginx:", "bad tag ''"),
        ("nginx:bad/tag", "bad registry 'nginx:bad'"),
        ("team/nginx-", "bad path component"),
        ("nginx@sha256:xyz", "bad digest"),
        ("my image", "bad path component"),
    ],
)
def test_invalid_image_names(image: str, fragment: str) -> None:
    with pytest.raises(InvalidImageName) as info:
        resolve(image, None, None, {})
    assert fragment in str(info.value)
    assert info.value.reason == "InvalidImageName"


def test_unknown_image_message_lists_known_images() -> None:
    with pytest.raises(UnknownImage) as info:
        resolve("foo/bar:1.0", ["sleep", "1"], None, {})
    message = str(info.value)
    assert message.startswith('image "foo/bar:1.0": not a built-in lab image (known: traefik/whoami, nginx,')
    assert info.value.reason == "ErrImagePull"
    for name in known_images():
        assert name in message


def test_image_defaults() -> None:
    assert resolve("traefik/whoami:v1.10", None, None, {}) == mod("whoami")
    assert resolve("nginx:1.27", None, None, {}) == [*mod("nginx"), "-g", "daemon off;"]
    assert resolve("nginxinc/nginx-unprivileged", None, None, {}) == [*mod("nginx"), "--port", "8080", "-g",
                                                                      "daemon off;"]
    assert resolve("registry.k8s.io/e2e-test-images/agnhost:2.47", None, None, {}) == [*mod("agnhost"), "pause"]
    assert resolve("quay.io/cilium/json-mock:v1.3.8", None, None, {}) == mod("jsonmock")
    assert resolve("docker.io/cilium/starwars", None, None, {}) == mod("starwars")
    assert resolve("registry.k8s.io/pause:3.9", None, None, {}) == mod("idle")


@pytest.mark.parametrize("image", ["busybox", "busybox:1.36", "alpine:3.20", "nicolaka/netshoot", "curlimages/curl"])
def test_shell_images_idle_without_command(image: str) -> None:
    assert resolve(image, None, None, {}) == ["sleep", "infinity"]
    assert resolve(image, [], [], {}) == ["sleep", "infinity"]  # empty lists are "not set", as in Kubernetes


def test_command_replaces_entrypoint_and_runs_host_program() -> None:
    assert resolve("busybox", ["sleep", "3600"], None, {}) == ["sleep", "3600"]
    assert resolve("nicolaka/netshoot", ["sh", "-c", "sleep 1; echo hi"], None, {}) == ["sh", "-c",
                                                                                         "sleep 1; echo hi"]
    # command replaces the entrypoint and drops the image's default args
    assert resolve("nginx", ["sleep"], ["10"], {}) == ["sleep", "10"]


def test_args_go_to_the_entrypoint() -> None:
    agnhost = "registry.k8s.io/e2e-test-images/agnhost:2.39"
    assert resolve(agnhost, None, ["netexec", "--http-port=8080"], {}) == [*mod("agnhost"), "netexec",
                                                                          "--http-port=8080"]
    assert resolve(agnhost, None, ["serve-hostname", "--port", "9376"], {}) == [*mod("agnhost"), "serve-hostname",
                                                                               "--port", "9376"]
    assert resolve("traefik/whoami", None, ["--port", "8080"], {}) == [*mod("whoami"), "--port", "8080"]
    # images without an entrypoint run the args as the command
    assert resolve("busybox", None, ["sleep", "3600"], {}) == ["sleep", "3600"]


def test_image_binaries_named_in_command_map_to_builtins() -> None:
    agnhost = "k8s.gcr.io/e2e-test-images/agnhost:2.20"
    assert resolve(agnhost, ["/agnhost", "serve-hostname"], None, {}) == [*mod("agnhost"), "serve-hostname"]
    assert resolve(agnhost, ["agnhost"], ["netexec"], {}) == [*mod("agnhost"), "netexec"]
    assert resolve("nginx", ["nginx", "-g", "daemon off;"], None, {}) == [*mod("nginx"), "-g", "daemon off;"]
    assert resolve("containous/whoami", ["/whoami", "--port=81"], None, {}) == [*mod("whoami"), "--port=81"]


def test_entrypoint_scripts_exec_their_arguments() -> None:
    assert resolve("nginx", None, ["sleep", "5"], {}) == ["sleep", "5"]
    assert resolve("curlimages/curl", None, ["-s", "http://web"], {}) == ["curl", "-s", "http://web"]
    assert resolve("curlimages/curl", None, ["curl", "-v", "http://web"], {}) == ["curl", "-v", "http://web"]
    assert resolve("curlimages/curl", None, ["sleep", "infinity"], {}) == ["sleep", "infinity"]


def test_variable_expansion_in_command_and_args() -> None:
    env = {"PORT": "8080", "POD_NAME": "web-1"}
    argv = resolve("busybox", ["sh", "-c", "echo $(POD_NAME) on $(PORT) $$(PORT) $(MISSING)"], None, env)
    assert argv == ["sh", "-c", "echo web-1 on 8080 $(PORT) $(MISSING)"]
    argv = resolve("registry.k8s.io/e2e-test-images/agnhost:2.47", None, ["netexec", "--http-port=$(PORT)"], env)
    assert argv[-1] == "--http-port=8080"
    assert expand("$ $5 $(", env) == "$ $5 $("
