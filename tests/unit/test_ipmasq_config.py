"""ip-masq-agent's configuration: Cilium's default list, link-local, the ConfigMap and the Helm
values, and precise refusals of bad CIDRs."""

from __future__ import annotations

import ipaddress

import pytest

from membrane.cli.bpf_cmds import render_ipmasq
from membrane.model.errors import ValidationError
from membrane.model.helm_release import effective_options, resolve
from membrane.model.ipmasq import DEFAULT_NON_MASQUERADE_CIDRS, IpMasqConfig, parse_config_text
from membrane.model.validate import validate_object

# Cilium's documented list for an empty configuration (Documentation/network/concepts/masquerading.rst).
CILIUM_DEFAULTS = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "192.0.0.0/24",
                   "192.0.2.0/24", "192.88.99.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
                   "240.0.0.0/4"]


def _texts(cfg: IpMasqConfig) -> list[str]:
    return [str(p) for p in cfg.prefixes()]


def _configmap(config: str, name: str = "ip-masq-agent", namespace: str = "kube-system") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": {"config": config}}


def test_an_empty_config_means_ciliums_default_list_and_link_local() -> None:
    assert sorted(DEFAULT_NON_MASQUERADE_CIDRS) == sorted(CILIUM_DEFAULTS)
    got = _texts(IpMasqConfig())
    assert sorted(got) == sorted([*CILIUM_DEFAULTS, "169.254.0.0/16"])
    assert got == sorted(got, key=lambda c: (ipaddress.IPv4Network(c).network_address, c))
    assert "169.254.0.0/16" not in _texts(IpMasqConfig(masq_link_local=True))


def test_a_list_replaces_the_defaults_and_link_local_is_still_added() -> None:
    cfg = parse_config_text("nonMasqueradeCIDRs:\n- 203.0.113.12/32\n- 10.0.0.0/8\n", "data.config")
    assert _texts(cfg) == ["10.0.0.0/8", "169.254.0.0/16", "203.0.113.12/32"]
    cfg = parse_config_text('{"nonMasqueradeCIDRs": ["10.1.2.3/16"], "masqLinkLocal": true}', "data.config")
    assert _texts(cfg) == ["10.1.0.0/16"]  # JSON works; host bits cleared as Go's ParseCIDR does


@pytest.mark.parametrize("config,message", [
    ("nonMasqueradeCIDRs:\n- 10.0.0.0/8\n- 10.1.0.0/16\n",
     'data.config.nonMasqueradeCIDRs[1]: Invalid value: "10.1.0.0/16": overlaps data.config.nonMasqueradeCIDRs[0] '
     "(10.0.0.0/8)"),
    ("nonMasqueradeCIDRs: [192.0.2.0/24, 192.0.2.0/24]",
     "nonMasqueradeCIDRs[1]: Invalid value: \"192.0.2.0/24\": duplicates data.config.nonMasqueradeCIDRs[0]"),
    ("nonMasqueradeCIDRs: [10.0.0.0/33]", 'nonMasqueradeCIDRs[0]: Invalid value: "10.0.0.0/33": must be a valid CIDR'),
    ("nonMasqueradeCIDRs: [10.0.0.1]", 'nonMasqueradeCIDRs[0]: Invalid value: "10.0.0.1": must be a valid CIDR'),
    ("nonMasqueradeCIDRs: ['fd00::/8']", "IPv6 is not enabled"),
    ("nonMasqueradeCIDRs: 10.0.0.0/8", "data.config.nonMasqueradeCIDRs: Invalid value"),
    ("masqLinkLocal: yes-please", "data.config.masqLinkLocal: Invalid value"),
    ("nonMasqueradeCIDR: [10.0.0.0/8]", 'unknown field "data.config.nonMasqueradeCIDR"'),
    ("nonMasqueradeCIDRs: [10.0.0.0/8", "data.config: not valid YAML"),
])
def test_a_bad_configmap_is_refused_at_apply_with_the_field(config: str, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        validate_object(_configmap(config), "masq.yaml:doc 1")
    assert str(err.value).startswith("masq.yaml:doc 1: ") and message in str(err.value), str(err.value)


def test_other_configmaps_are_plain_data() -> None:
    validate_object(_configmap("nonMasqueradeCIDRs: nonsense", name="other"), "x")
    validate_object(_configmap("nonMasqueradeCIDRs: nonsense", namespace="default"), "x")
    with pytest.raises(ValidationError, match='data: Invalid value: "a b"'):
        validate_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a b": "1"}},
                        "x")
    with pytest.raises(ValidationError, match=r"data\.n: Invalid value: 1: must be a string"):
        validate_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"n": 1}}, "x")


def test_helm_values_enable_and_configure_it() -> None:
    out = resolve({"ipMasqAgent": {"enabled": True, "config": {"nonMasqueradeCIDRs": ["203.0.113.12/32"],
                                                               "masqLinkLocal": True,
                                                               "masqLinkLocalIPv6": False}}})
    cfg = out.config
    assert (cfg.ip_masq_agent_enabled, cfg.ip_masq_agent_non_masquerade_cidrs, cfg.ip_masq_agent_masq_link_local) == (
        True, ["203.0.113.12/32"], True)
    assert _texts(cfg.ip_masq_config()) == ["203.0.113.12/32"]
    assert dict(effective_options(cfg.to_dict()))["EnableIPMasqAgent"] == "true"
    assert dict(effective_options(resolve({}).config.to_dict()))["EnableIPMasqAgent"] == "false"
    warned = resolve({"ipMasqAgent": {"config": {"masqLinkLocalIPv6": True}}}).warnings
    assert warned == ["ipMasqAgent.config.masqLinkLocalIPv6=true has no effect in Membrane: "
                      "IPv6 is off (not implemented yet)"]


@pytest.mark.parametrize("values,message", [
    ({"ipMasqAgent": {"config": {"nonMasqueradeCIDRs": ["10.0.0.0/8", "10.2.0.0/16"]}}},
     "values: ipMasqAgent.config.nonMasqueradeCIDRs[1]: Invalid value: \"10.2.0.0/16\": overlaps "
     "ipMasqAgent.config.nonMasqueradeCIDRs[0] (10.0.0.0/8)"),
    ({"ipMasqAgent": {"enabled": True}, "bpf": {"masquerade": False}},
     "values: ipMasqAgent.enabled=true needs BPF masquerading"),
    ({"ipMasqAgent": {"config": {"nonMasq": ["10.0.0.0/8"]}}}, "ipMasqAgent.config.nonMasq: unknown key"),
])
def test_bad_helm_values_are_refused(values: dict, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        resolve(values)
    assert message in str(err.value), str(err.value)


def test_bpf_ipmasq_list_prints_ciliums_column() -> None:
    assert render_ipmasq(["10.0.0.0/8", "169.254.0.0/16"]).splitlines() == [
        "IP PREFIX/ADDRESS", "10.0.0.0/8", "169.254.0.0/16"]
    assert render_ipmasq([]) == "IP PREFIX/ADDRESS"
