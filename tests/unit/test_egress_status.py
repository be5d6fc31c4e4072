"""The ``Egress Gateway:`` line of the agent's status page (pure renderer)."""

from __future__ import annotations

from datetime import UTC, datetime

from membrane.cli.dbg_status import render_status
from membrane.cli.egress_status import egress_gateway_lines

NOW = datetime(2024, 5, 1, tzinfo=UTC)


def _page(egress: object, verbose: bool = False) -> list[str]:
    return render_status({"membrane": {"state": "Ok", "msg": "0.1.0"}, "encryption": {"mode": "Disabled"},
                          "egress-gateway": egress}, verbose, now=NOW).splitlines()


def test_disabled_is_one_word_after_encryption() -> None:
    page = _page({"enabled": False, "rows": 0, "policies": 0, "skipped-policies": {}})
    at = next(i for i, line in enumerate(page) if line.startswith("Egress Gateway:"))
    assert page[at].split() == ["Egress", "Gateway:", "Disabled"]
    assert page[at - 1].startswith("Encryption:")


def test_enabled_counts_policies_and_map_entries() -> None:
    line = next(x for x in _page({"enabled": True, "rows": 3, "policies": 2, "skipped-policies": {}})
                if x.startswith("Egress Gateway:"))
    assert " ".join(line.split()) == "Egress Gateway: Enabled [2 policies, 3 entries in mb_egress_v4]"
    assert egress_gateway_lines({"egress-gateway": {"enabled": True, "rows": 1, "policies": 1}}) == [
        "Egress Gateway:\tEnabled\t[1 policy, 1 entry in mb_egress_v4]"]


def test_skipped_policies_are_listed_with_their_reason_without_verbose() -> None:
    lines = egress_gateway_lines({"egress-gateway": {
        "enabled": True, "rows": 0, "policies": 1,
        "skipped-policies": {"b-pol": "spec.egressGateway: egressIP and interface are exclusive",
                             "a-pol": "spec.destinationCIDRs[0]: not a CIDR"}}})
    assert lines == ["Egress Gateway:\tEnabled\t[1 policy, 0 entries in mb_egress_v4, 2 policies skipped]",
                     "  skipped a-pol: spec.destinationCIDRs[0]: not a CIDR",
                     "  skipped b-pol: spec.egressGateway: egressIP and interface are exclusive"]


def test_an_agent_that_does_not_report_the_field_gets_no_line() -> None:
    assert egress_gateway_lines({}) == []
    assert egress_gateway_lines({"egress-gateway": "garbage"}) == []
    assert not any(line.startswith("Egress Gateway") for line in
                   render_status({"membrane": {"state": "Ok", "msg": "0.1.0"}}, True, now=NOW).splitlines())
    # malformed counts read as 0 rather than crash the page
    assert egress_gateway_lines({"egress-gateway": {"enabled": True, "rows": "x", "policies": True}}) == [
        "Egress Gateway:\tEnabled\t[0 policies, 0 entries in mb_egress_v4]"]
