"""One vocabulary: every drop reason, event type, trace point and reason, and policy-verdict code the BPF
headers define is defined with the same number (and, for drops, the same text) in
membrane.model.datapath_codes, which the map decoders, Hubble and metrics import."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from membrane.hubble import metrics, monitor
from membrane.model import datapath_codes as codes

LIB = Path(__file__).resolve().parents[2] / "bpf" / "lib"
DEFINE = re.compile(r'^#define\s+([A-Z][A-Z0-9_]*)\s+(\d+)\s*(?:/\*\s*(?:"([^"]*)")?.*\*/)?\s*$', re.M)
VOCABULARY = re.compile(r"^(DROP_|REASON_FORWARDED$|EVENT_|TRACE_|POLICY_MATCH_|POLICY_ACTION_)")
NOT_CODES = {"EVENT_CAPTURE_LEN"}  # a size, not a code


def header_codes() -> dict[str, tuple[int, str | None, str]]:
    """name -> (number, the drop text in its comment, header) for every vocabulary #define in bpf/lib/*.h."""
    found: dict[str, tuple[int, str | None, str]] = {}
    for header in sorted(LIB.glob("*.h")):
        for name, number, text in DEFINE.findall(header.read_text()):
            if VOCABULARY.match(name) and name not in NOT_CODES:
                assert name not in found, f"{name} is defined in both {found[name][2]} and {header.name}"
                found[name] = (int(number), text or None, header.name)
    return found


HEADER = header_codes()


def test_the_headers_define_the_vocabulary_we_expect_to_check():
    # the parser finds them: a change of #define style must not make this test pass vacuously
    assert {"DROP_POLICY", "DROP_POLICY_DENY", "DROP_NO_SERVICE", "EVENT_DROP", "TRACE_TO_LXC",
            "TRACE_REASON_UNKNOWN", "POLICY_MATCH_L3_L4", "POLICY_ACTION_DENY", "REASON_FORWARDED"} <= HEADER.keys()
    assert HEADER["DROP_POLICY"][1] == "Policy denied"


@pytest.mark.parametrize("name", sorted(HEADER))
def test_each_header_code_is_defined_in_python_with_its_number(name: str):
    number, _text, header = HEADER[name]
    assert hasattr(codes, name), f"bpf/lib/{header}: {name} has no definition in membrane.model.datapath_codes"
    assert getattr(codes, name) == number, f"bpf/lib/{header}: {name} is {number}, Python says {getattr(codes, name)}"


@pytest.mark.parametrize("name", sorted(n for n, (_v, text, _h) in HEADER.items() if n.startswith("DROP_")))
def test_each_drop_reason_has_the_headers_text(name: str):
    number, text, header = HEADER[name]
    assert text is not None, f"bpf/lib/{header}: {name} needs its text in a /* \"...\" */ comment"
    assert codes.DROP_REASON_TEXTS.get(number) == text, \
        f"bpf/lib/{header}: {name} ({number}) reads {text!r}, Python says {codes.DROP_REASON_TEXTS.get(number)!r}"


def test_python_names_no_datapath_code_the_headers_give_another_number():
    for name in dir(codes):
        if VOCABULARY.match(name) and name in HEADER:
            assert getattr(codes, name) == HEADER[name][0], name


def test_hubble_and_metrics_use_the_one_definition():
    assert monitor.DROP_REASON_TEXTS is codes.DROP_REASON_TEXTS
    assert monitor.TRACE_POINT_NAMES is codes.TRACE_POINT_NAMES
    assert monitor.MSG_DROP == codes.EVENT_DROP and monitor.MSG_POLICY_VERDICT == codes.EVENT_POLICY_VERDICT
    assert tuple(codes.TRACE_POINT_NAMES[i] for i in sorted(codes.TRACE_POINT_NAMES)) == metrics.TRACE_POINT_NAMES
    assert list(codes.TRACE_POINT_NAMES) == list(range(len(codes.TRACE_POINT_NAMES)))
