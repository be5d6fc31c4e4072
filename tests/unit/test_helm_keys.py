"""The Helm key table: what each key of the seeds' lines does, refusals, suggestions, upgrades."""

from __future__ import annotations

import pytest

from membrane.cli.lab_helm_cmds import read_values
from membrane.cli.main import build_parser
from membrane.lab.release import Release, plan
from membrane.lab.topology import build_topology
from membrane.model import helm_keys
from membrane.model.config import ClusterConfig
from membrane.model.errors import ValidationError
from membrane.model.helm_release import effective_options, resolve, upgrade_blockers
from membrane.model.helm_values import combine, parse_set
from tests.helm_lines import helm_commands


def _resolve(*sets: str) -> tuple[ClusterConfig, list[str]]:
    out = resolve(combine([], [parse_set(s) for s in sets]))
    return out.config, out.warnings


def test_settings_take_cilium_meaning() -> None:
    cfg, warnings = _resolve("ipam.mode=kubernetes", "debug.enabled=true", "bpf.masquerade=false",
                             "loadBalancer.algorithm=maglev", "bpf.hostLegacyRouting=true")
    assert (cfg.ipam_mode, cfg.debug, cfg.enable_ipv4_masquerade, cfg.lb_algorithm, cfg.bpf_host_legacy_routing) == (
        "kubernetes", True, False, "maglev", True)
    assert warnings == []


def test_what_membrane_always_does_is_silent_and_the_opposite_warns() -> None:
    _, warnings = _resolve("kubeProxyReplacement=true", "endpointRoutes.enabled=true", "hubble.relay.enabled=true")
    assert warnings == []
    _, warnings = _resolve("kubeProxyReplacement=false")
    assert warnings == ["kubeProxyReplacement=false has no effect in Membrane: there is no kube-proxy: "
                        "the BPF load balancer serves every Service"]


def test_keys_meaningless_in_a_lab_warn_with_the_reason() -> None:
    _, warnings = _resolve("k8sServiceHost=192.168.10.10", "image.tag=v1.16.3")
    assert len(warnings) == 2
    assert warnings[0].startswith("image.tag=v1.16.3 has no effect in the lab: ")
    assert "no kube-apiserver" in warnings[1]


def test_tutorial_misspelling_warns_names_the_real_key_and_changes_nothing() -> None:
    cfg, warnings = _resolve("bpf.hostRouting=true")
    assert cfg == ClusterConfig()
    assert len(warnings) == 1 and "bpf.hostLegacyRouting" in warnings[0] and "ignored" in warnings[0]


def test_features_not_built_are_refused_once_per_feature_but_off_is_fine() -> None:
    _resolve("l2announcements.enabled=false", "bandwidthManager.enabled=false")
    with pytest.raises(ValidationError) as err:
        _resolve("bandwidthManager.enabled=true", "clustermesh.useAPIServer=true",
                 "encryption.wireguard.persistentKeepalive=10s")
    assert ("encryption.wireguard.persistentKeepalive=10s: this encryption setting is not implemented yet"
            in str(err.value)), str(err.value)
    assert "bandwidthManager.enabled=true: the bandwidth manager is not implemented yet" in str(err.value), str(err.value)
    assert "clustermesh.useAPIServer=true: Cluster Mesh is not implemented yet" in str(err.value), str(err.value)
    with pytest.raises(ValidationError, match="egressGateway.enabled=true needs BPF masquerading"):
        _resolve("bpf.masquerade=false", "egressGateway.enabled=true")
    assert _resolve("egressGateway.enabled=true")[0].egress_gateway_enabled
    with pytest.raises(ValidationError, match="tunnelProtocol geneve is not implemented yet"):
        _resolve("routingMode=tunnel", "tunnelProtocol=geneve")
    # the L7 proxy exists and always runs: true is the fixed value, false only warns
    assert _resolve("l7Proxy=true")[1] == []
    assert "L7 proxies always run" in _resolve("l7Proxy=false")[1][0]


@pytest.mark.parametrize("key, hint", [
    ("kubeProxyReplacment", "kubeProxyReplacement"),
    ("hubble.relay.enable", "hubble.relay.enabled"),
    ("ipam.mod", "ipam.mode"),
])
def test_unknown_key_suggests_the_closest(key: str, hint: str) -> None:
    with pytest.raises(ValidationError) as err:
        _resolve(f"{key}=true")
    assert str(err.value) == f"{key}: unknown key, not in Cilium's chart (did you mean {hint}?)"


def test_unknown_key_without_a_close_one() -> None:
    with pytest.raises(ValidationError) as err:
        _resolve("zzzz=1")
    assert str(err.value) == "zzzz: unknown key, not in Cilium's chart"


@pytest.mark.parametrize("setting, message", [
    ("debug.enabled=maybe", "debug.enabled=maybe: expected true or false"),
    ("maxPods=lots", "maxPods=lots: expected an integer"),
    ("hubble.metrics.enabled={flow,nope}", "unknown Hubble metric 'nope'"),
    ("hubble.metrics.enabled={flow:labelsContext=bogus}", "unknown labelsContext label 'bogus'"),
])
def test_bad_values_of_known_keys(setting: str, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        build_topology(settings=[setting])
    assert message in str(err.value)


def test_every_key_of_the_table_resolves_to_its_own_entry() -> None:
    for key in helm_keys.known_keys():
        probe = key.replace(".*", ".something")
        assert helm_keys.lookup(probe) is not None, key


def test_upgrade_blockers_name_the_key_and_the_reason() -> None:
    running = ClusterConfig(ipam_mode="kubernetes")
    assert upgrade_blockers(running, ClusterConfig(ipam_mode="kubernetes", debug=True)) == []
    blockers = upgrade_blockers(running, ClusterConfig(cluster_pool_ipv4_pod_cidr_list=["10.1.0.0/16"]))
    assert blockers == [
        "ipam.mode: kubernetes -> cluster-pool needs a new lab (nodes and pods hold addresses of the IPAM mode "
        "the lab was created with)",
        "ipam.operator.clusterPoolIPv4PodCIDRList: {10.0.0.0/8} -> {10.1.0.0/16} needs a new lab (the nodes' pod "
        "CIDRs were allocated from this pool)"]


def test_effective_options_show_cilium_names() -> None:
    rows = dict(effective_options(ClusterConfig(debug=True).to_dict()))
    assert rows["EnableL2Announcements"] == "false"
    assert rows["KubeProxyReplacement"] == "true"
    assert rows["IPAM"] == "cluster-pool"
    assert rows["Debug"] == "true"
    assert rows["HubbleMetrics"] == "[flow drop tcp port-distribution icmp]"


def _args(argv: list[str]) -> tuple[list[dict[str, object]], list[dict[str, object]], bool]:
    args = build_parser().parse_args(argv)
    files, sets = read_values(args)
    return files, sets, getattr(args, "reuse_values", False)


def test_the_seed_helm_lines() -> None:
    """Install: warnings only for keys with no effect; then the upgrades in order, with --reuse-values."""
    commands = helm_commands()
    assert [c[1] for c in commands] == ["create", "upgrade", "upgrade", "upgrade", "upgrade"]
    files, sets, _ = _args(commands[0])
    topo = build_topology(values=combine(files, sets))
    cfg = topo.config
    assert (cfg.ipam_mode, cfg.routing_mode, cfg.debug, cfg.ipv4_native_routing_cidr) == (
        "kubernetes", "native", True, "192.168.0.0/16")
    assert cfg.hubble_metrics_enabled[-1].endswith("labelsContext=source_ip,source_namespace,source_workload,"
                                                   "destination_ip,destination_namespace,destination_workload,"
                                                   "traffic_direction")
    warned = sorted(w.split("=")[0].split(" ")[0] for w in topo.warnings)
    assert warned == ["bpf.hostRouting", "hubble.metrics.enableOpenMetrics",
                      "installNoConntrackIptablesRules", "k8sServiceHost", "k8sServicePort", "rollOutCiliumPods"]
    running = Release(1, topo.values, cfg)
    # ip-masq-agent is built: its line goes through and keeps the install's values.
    files, sets, reuse = _args(commands[1])
    masq = plan(running, files, sets, reuse)
    assert (masq.config.ip_masq_agent_enabled, masq.config.ipam_mode, masq.warnings) == (True, "kubernetes", [])
    refused = {}
    for argv in commands[2:]:
        files, sets, reuse = _args(argv)
        assert reuse
        if "l2announcements.enabled=true" in argv:  # built: the upgrade goes through
            l2 = plan(running, files, sets, reuse).config
            assert (l2.l2_announcements_enabled, l2.l2_announcements_lease_duration) == (True, "3s")
            continue
        if "encryption.type=wireguard" in argv:  # built: the upgrade goes through
            wg = plan(running, files, sets, reuse).config
            assert (wg.encryption_enabled, wg.encryption_type) == (True, "wireguard")
            continue
        if "egressGateway.enabled=true" in argv:  # built: the upgrade goes through (BPF masquerade is on)
            egw = plan(running, files, sets, reuse)
            assert (egw.config.egress_gateway_enabled, egw.warnings) == (True, []), egw.warnings
            continue
        with pytest.raises(ValidationError) as err:
            plan(running, files, sets, reuse)
        refused[" ".join(argv[-2:])] = str(err.value)
    assert refused == {}, refused
    # An implemented change goes through and keeps the reused values.
    new = plan(running, [], [parse_set("loadBalancer.algorithm=maglev")], reuse_values=True)
    assert (new.revision, new.config.lb_algorithm, new.config.debug, new.config.ipam_mode) == (
        2, "maglev", True, "kubernetes")
    with pytest.raises(ValidationError, match="ipam.mode: kubernetes -> cluster-pool needs a new lab"):
        plan(running, [], [parse_set("debug.enabled=false")], reuse_values=False)


def test_upgrade_warns_only_about_the_keys_it_gives() -> None:
    running = Release(1, {"k8sServiceHost": "192.168.10.10"}, ClusterConfig())
    new = plan(running, [], [parse_set("k8sServicePort=6443")], reuse_values=True)
    assert [w.split("=")[0] for w in new.warnings] == ["k8sServicePort"]
    assert new.values == {"k8sServiceHost": "192.168.10.10", "k8sServicePort": 6443}


def test_seed_000_ipam_flags() -> None:
    cfg, warnings = _resolve("ipam.mode=kubernetes", "k8s.requireIPv4PodCIDR=true", "k8s.requireIPv6PodCIDR=true")
    assert cfg.ipam_mode == "kubernetes"
    assert len(warnings) == 1 and warnings[0].startswith("k8s.requireIPv6PodCIDR=true has no effect")


def test_a_feature_that_lands_in_cluster_config_overrides_its_not_yet_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    # (debug stands in for the new feature's attribute)
    monkeypatch.setitem(ClusterConfig.HELM_KEYS, "l2announcements.enabled", "debug")
    monkeypatch.delitem(helm_keys._OPTIONS, "debug")
    cfg, warnings = _resolve("l2announcements.enabled=true")
    assert cfg.debug is True and warnings == []
    assert dict(effective_options(cfg.to_dict()))["EnableL2Announcements"] == "true"


def test_helm_words_of_the_seed_lines_are_accepted() -> None:
    from membrane.cli.lab_helm_cmds import helm_word_warnings

    install = build_parser().parse_args(helm_commands()[0])
    assert (install.release, install.chart, install.namespace) == ("cilium", "cilium/cilium", "kube-system")
    assert helm_word_warnings(install) == ["--version 1.16.3 has no effect: the lab runs this checkout's Membrane"]
    upgrade = build_parser().parse_args(helm_commands()[1])
    assert upgrade.reuse_values and helm_word_warnings(upgrade) == []
    other = build_parser().parse_args(["lab", "upgrade", "x", "other/chart", "--namespace", "cilium"])
    assert len(helm_word_warnings(other)) == 2


def test_computed_values_show_defaults_and_user_values() -> None:
    from membrane.model.helm_release import computed_values

    out = computed_values(ClusterConfig(ipam_mode="kubernetes"), {"k8sServiceHost": "192.168.10.10"})
    assert out["ipam"]["mode"] == "kubernetes"
    assert out["kubeProxyReplacement"] is True and out["l2announcements"]["enabled"] is False
    assert out["hubble"]["relay"]["enabled"] is True and out["k8sServiceHost"] == "192.168.10.10"
    assert out["loadBalancer"] == {"algorithm": "random", "mode": "snat"}


def test_policy_cidr_match_mode_defaults_to_none_and_nodes_is_a_setting() -> None:
    cfg, warnings = _resolve("policyCIDRMatchMode={}")
    assert cfg.policy_cidr_match_mode == [] and warnings == []
    assert ClusterConfig().policy_cidr_match_mode == []
    cfg, warnings = _resolve("policyCIDRMatchMode={nodes}")
    assert cfg.policy_cidr_match_mode == ["nodes"] and warnings == []
    with pytest.raises(ValidationError, match="policyCIDRMatchMode: pods: the only mode is nodes"):
        _resolve("policyCIDRMatchMode={pods}")


def test_wireguard_encryption_is_a_setting_and_what_it_lacks_is_refused() -> None:
    cfg, warnings = _resolve("encryption.enabled=true", "encryption.type=wireguard")
    assert cfg.encryption_enabled and cfg.encryption_type == "wireguard" and not warnings
    with pytest.raises(ValidationError, match="encryption.type ipsec is not implemented yet; use wireguard"):
        _resolve("encryption.enabled=true", "encryption.type=ipsec")
    with pytest.raises(ValidationError, match="encryption.type 'aes' is not one of wireguard, ipsec"):
        _resolve("encryption.type=aes")
    with pytest.raises(ValidationError, match="node-to-node encryption is not implemented yet"):
        _resolve("encryption.nodeEncryption=true")


def test_host_firewall_is_off_by_default_and_a_setting() -> None:
    assert ClusterConfig().host_firewall_enabled is False
    cfg, warnings = _resolve("hostFirewall.enabled=true")
    assert cfg.host_firewall_enabled is True and warnings == []
    with pytest.raises(ValidationError, match="hostFirewall.enabled=yes: expected true or false"):
        _resolve("hostFirewall.enabled=yes")


def test_socket_lb_is_on_by_default_and_can_be_switched_off() -> None:
    assert ClusterConfig().socket_lb_enabled is True  # on with kubeProxyReplacement, as in Cilium
    cfg, warnings = _resolve("socketLB.enabled=false")
    assert (cfg.socket_lb_enabled, warnings) == (False, [])
    _resolve("socketLB.hostNamespaceOnly=false")
    with pytest.raises(ValidationError):
        _resolve("socketLB.hostNamespaceOnly=true")
