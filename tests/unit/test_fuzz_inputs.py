"""Fuzzing what users and runtimes hand us (issue 18, "Also"): the manifest loader with admission, and
the CNI request parser. Whatever the input, the only exceptions are the project's own error types
(ValidationError, CNIError), whose text is the whole user-facing message; never a crash.

Bounded for CI: 200 examples per property, no deadline (the machine is shared).
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from membrane.api.cni_errors import CNIError
from membrane.api.cni_request import COMMANDS, decode_netconf, read_environment, validate_netconf
from membrane.cni.main import run as cni_run
from membrane.model.errors import ValidationError
from membrane.model.kinds import KINDS
from membrane.model.loader import load_text
from membrane.model.validate import validate_object

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- the manifest loader ----------------------------------------------------------------------------

YAML_TOKENS = st.sampled_from([
    "a", "b", ": ", ":", "- ", "-", "\n", "  ", "---\n", "...\n", "&x ", "*x", "&y ", "*y", "<<: ", "[", "]",
    "{", "}", ",", "? ", "!!str ", "!!int ", "!!binary ", "!foo ", "!!timestamp ", "!!bool ", "!!float ", "!!set ",
    "!!omap ", "!!pairs ", "!!map ", "!!seq ", "!!null ", "!!python/name:os.system ", "|\n", ">\n", "'", '"', "#", "%YAML 1.1\n",
    "1", "0x1F", "1e400", "-.inf", ".nan", "null", "~", "true", "2024-01-01", "9" * 40, "\t", "\\", "é", "\x00",
    "kind: Pod\n", "apiVersion: v1\n", "metadata:\n", "name: x\n", "spec:\n", "containers:\n", "items:\n",
])
YAML_TEXT = st.one_of(st.text(max_size=300), st.lists(YAML_TOKENS, max_size=60).map("".join))


def _loaded_and_validated(text: str, source: str) -> None:
    try:
        documents = load_text(text, source)
    except ValidationError as exc:
        assert str(exc).startswith(source), str(exc)
        return
    for doc in documents:
        try:
            validate_object(doc.obj, doc.where)
        except ValidationError as exc:
            assert str(exc).startswith(doc.where), str(exc)


@FUZZ
@given(YAML_TEXT)
def test_yaml_text_only_raises_validation_errors(text: str) -> None:
    _loaded_and_validated(text, "fuzz.yaml")


@FUZZ
@given(st.one_of(st.text(max_size=200), st.lists(YAML_TOKENS, max_size=40).map("".join)))
def test_json_text_only_raises_validation_errors(text: str) -> None:
    _loaded_and_validated(text, "fuzz.json")


# Structured manifests: real kinds and field names, values of every JSON type, so that the validators
# behind the envelope are reached (random text rarely gets past apiVersion/kind).
FIELD_NAMES = [
    "name", "namespace", "labels", "annotations", "spec", "status", "containers", "image", "ports", "port",
    "containerPort", "hostPort", "protocol", "targetPort", "nodePort", "replicas", "selector", "matchLabels",
    "matchExpressions", "key", "operator", "values", "template", "metadata", "nodeName", "type", "clusterIP",
    "clusterIPs", "endpointSelector", "ingress", "egress", "fromEndpoints", "toPorts", "toCIDR", "fromCIDRSet",
    "cidr", "except", "endPort", "rules", "http", "dns", "icmps", "fields", "family", "podSelector",
    "policyTypes", "from", "to", "ipBlock", "namespaceSelector", "sessionAffinity", "externalTrafficPolicy",
    "hostNetwork", "env", "value", "command", "args", "terminationGracePeriodSeconds", "priority", "strategy",
    "rollingUpdate", "maxSurge", "maxUnavailable", "externalName", "loadBalancerIP", "toFQDNs", "matchName",
    "matchPattern", "toEntities", "fromEntities", "toServices", "k8sService", "serviceName", "specs",
]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["", "TCP", "UDP", "80", "http", "²", "None", "10.0.0.0/8", "10.0.0.1", "a/b", "In", "Exists",
                     "ClusterIP", "NodePort", "LoadBalancer", "ExternalName", "Local", "1.2.3.4/33", "k8s:app",
                     "world", "25%", "*.example.com", "-1", "0x10", "٣", "9" * 30]),
)
NUMERIC_EDGES = st.sampled_from([
    0, -1, 65536, 2**31, -(2**31) - 1, 2**63, 10**20, 1e20, 0.5, float("inf"), float("nan"), True,
    "0", "-1", "65536", "00080", "²", "٣", "１", "9" * 5000, "1e3", " 80", "0x50", "",
])
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8)), inner, max_size=5),
    ),
    max_leaves=25,
)
KIND_PAIRS = st.sampled_from([(v, k.kind) for k in KINDS for v in k.api_versions] + [("v1", "List"), ("x", 1)])


@st.composite
def manifests(draw: Any) -> dict[str, Any]:
    api_version, kind = draw(KIND_PAIRS)
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind,
                           "metadata": draw(st.one_of(st.fixed_dictionaries({"name": st.sampled_from(["web", "a.b"])}),
                                                      st.fixed_dictionaries({"name": SCALARS}), JSON_VALUES))}
    for key in draw(st.lists(st.sampled_from(["spec", "specs", "status", "items"]), max_size=2, unique=True)):
        obj[key] = draw(JSON_VALUES)
    return obj


@FUZZ
@given(manifests())
def test_structured_manifests_only_raise_validation_errors(obj: dict[str, Any]) -> None:
    before = json.dumps(obj, sort_keys=True, default=repr)
    try:
        validate_object(obj, "fuzz.yaml:doc 1", allow_read_only=True)
    except ValidationError as exc:
        assert str(exc).startswith("fuzz.yaml:doc 1"), str(exc)
    assert json.dumps(obj, sort_keys=True, default=repr) == before  # the caller's object is never touched


# Mutations of real manifests (the examples and the model fixtures): one subtree replaced by a random
# value, so that every validator is reached with otherwise valid surroundings.
_ROOT = Path(__file__).resolve().parents[2]
SEEDS = [
    doc.obj
    for path in sorted([_ROOT / "examples" / "demo.yaml", *(_ROOT / "tests/unit/fixtures/model").glob("*.yaml")])
    for doc in load_text(path.read_text(), path.name)
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


@st.composite
def mutated_manifests(draw: Any) -> dict[str, Any]:
    obj = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        # The envelope (apiVersion, kind, metadata.name) is the structured test's business: mutating
        # it here would stop most examples before the validators this test is for.
        paths = [p for p in _paths(obj)[1:] if p[0] not in ("apiVersion", "kind") and p[:2] != ("metadata", "name")]
        if not paths:
            break
        leaves = [p for p in paths if not isinstance(_at(obj, p), dict | list)]
        scalar_only = bool(leaves) and draw(st.booleans())
        path = draw(st.sampled_from(leaves if scalar_only else paths))
        parent = _at(obj, path[:-1])
        if scalar_only:  # a wrong value where a real one was; numbers get numbers' edge cases
            current = parent[path[-1]]
            numeric = isinstance(current, int | float) or (isinstance(current, str) and current.isdigit())
            parent[path[-1]] = draw(NUMERIC_EDGES if numeric and draw(st.booleans()) else SCALARS)
        elif isinstance(parent, dict) and draw(st.booleans()):
            parent[draw(st.sampled_from(FIELD_NAMES))] = draw(JSON_VALUES)  # a (possibly unknown) field added
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    return obj


@FUZZ
@given(mutated_manifests())
def test_mutated_real_manifests_only_raise_validation_errors(obj: dict[str, Any]) -> None:
    test_structured_manifests_only_raise_validation_errors.hypothesis.inner_test(obj)  # type: ignore[attr-defined]


EDGE_VALUES = [
    None, True, 0, -1, 65536, 2**31, -(2**63) - 1, 10**20, 1e20, 0.5, float("inf"), float("nan"), "", "²", "٣",
    "１", "9" * 5000, "00080", "-1", " 80", "a/b", "..", "x" * 300, [], {}, [None], {"": None},
]


@pytest.mark.parametrize("seed", range(len(SEEDS)), ids=[f"{o['kind']}-{o['metadata']['name']}" for o in SEEDS])
def test_every_field_of_real_manifests_takes_every_edge_value(seed: int) -> None:
    """Exhaustive, not random: each field of each real manifest replaced, in turn, by each edge value."""
    for path in _paths(SEEDS[seed])[1:]:
        for value in EDGE_VALUES:
            obj = copy.deepcopy(SEEDS[seed])
            _at(obj, path[:-1])[path[-1]] = value
            try:
                validate_object(obj, "seed.yaml:doc 1")
            except ValidationError as exc:
                assert str(exc).startswith("seed.yaml:doc 1"), str(exc)


# ---- the CNI request parser ---------------------------------------------------------------------------

ENV_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC", "add", "eth0", "/var/run/netns/x",
                     "IgnoreUnknown=1;K8S_POD_NAME=a", "IgnoreUnknown=maybe", "a=b=c", ";;", "=x", "x" * 16]),
)
ENVIRON = st.dictionaries(
    st.sampled_from(["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH", "OTHER"]),
    ENV_TEXT, max_size=7,
)
NETCONF = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries(
        {"cniVersion": st.one_of(SCALARS, st.sampled_from(["0.3.1", "0.4.0", "1.0.0", "1.1.0", "9.9.9"])),
         "name": st.one_of(SCALARS, st.just("membrane")),
         "type": st.one_of(SCALARS, st.just("membrane-cni")),
         "agentSocket": st.one_of(SCALARS, st.just("/nonexistent/agent.sock"))},
        optional={"ipam": JSON_VALUES, "cni.dev/valid-attachments": JSON_VALUES, "cni.dev/attachments": JSON_VALUES},
    ),
)


@FUZZ
@given(ENVIRON)
def test_cni_environment_only_raises_cni_errors(environ: dict[str, str]) -> None:
    try:
        read_environment(environ)
    except CNIError as exc:
        assert exc.code in (3, 4) and exc.msg


@FUZZ
@given(st.one_of(st.binary(max_size=200), NETCONF.map(lambda v: json.dumps(v).encode())))
def test_cni_stdin_only_raises_cni_errors(raw: bytes) -> None:
    try:
        decode_netconf(raw)
    except CNIError as exc:
        assert exc.code == 6


@FUZZ
@given(st.sampled_from(COMMANDS), NETCONF)
def test_cni_netconf_only_raises_cni_errors(command: str, netconf: Any) -> None:
    if not isinstance(netconf, dict):
        return  # decode_netconf refuses those (above)
    try:
        validate_netconf(command, netconf)
    except CNIError as exc:
        assert exc.code in (1, 2, 6, 7) and exc.msg


@FUZZ
@given(ENVIRON, st.one_of(st.binary(max_size=100), NETCONF.map(lambda v: json.dumps(v).encode())))
def test_cni_plugin_always_answers_with_a_result_or_an_error_object(environ: dict[str, str], raw: bytes) -> None:
    """The executable's contract: exit 0 or 1, stdout empty or one JSON object, never an INTERNAL (999)
    error, which would mean an exception the parser did not turn into a CNIError."""
    # The netconfs' agentSocket never exists here, so a valid request ends in code 11 or 50.
    out, err = io.StringIO(), io.StringIO()
    rc = cni_run(environ, io.BytesIO(raw), out, err)
    assert rc in (0, 1)
    if out.getvalue():
        reply = json.loads(out.getvalue())
        assert isinstance(reply, dict)
        if rc == 1:
            assert reply["code"] != 999, reply
