"""What a node's speaker is told: sessions from the BGP resources (defaults, overrides), ExaBGP's config
and the incremental announce/withdraw lines, the bridge's reading of ExaBGP events, ``bgp`` tables."""

from __future__ import annotations

from membrane.bgp.advertisements import Route
from membrane.bgp.exabgp_text import commands, config, route_attributes
from membrane.bgp.sessions import node_sessions
from membrane.cli.bgp_cmds import render_peers, render_routes
from membrane.cli.cluster_status import ClusterStatus, Daemon, render
from membrane.cli.dbg_status import agent_warnings, failing_components
from membrane.datapath.linux.exabgp_bridge import _apply_event
from membrane.lab.frr import bgpd_config
from membrane.lab.presets import PRESETS
from membrane.lab.topology import build_topology

CLUSTER = {"metadata": {"name": "c"}, "spec": {
    "nodeSelector": {"matchLabels": {"bgp": "on"}},
    "bgpInstances": [{"name": "i", "localASN": 65001, "peers": [
        {"name": "tor", "peerAddress": "192.168.10.200", "peerASN": 65000, "peerConfigRef": {"name": "pc"}},
        {"name": "auto", "autoDiscovery": {"mode": "DefaultGateway", "defaultGateway": {"addressFamily": "ipv4"}}}]}]}}
PEER = {"metadata": {"name": "pc"}, "spec": {
    "transport": {"peerPort": 1179}, "timers": {"holdTimeSeconds": 9, "keepAliveTimeSeconds": 3},
    "gracefulRestart": {"enabled": True, "restartTimeSeconds": 15}, "ebgpMultihop": 3,
    "families": [{"afi": "ipv4", "safi": "unicast"}]}}
OVERRIDE = {"metadata": {"name": "k8s-w1"}, "spec": {"bgpInstances": [
    {"name": "i", "routerID": "10.10.10.10", "localPort": 1790, "peers": [{"name": "tor", "localAddress": "192.168.10.9"}]}]}}


def test_sessions_take_peer_config_defaults_and_the_nodes_override() -> None:
    [inst] = node_sessions("k8s-w1", {"bgp": "on"}, "192.168.10.101", [CLUSTER], [PEER], [OVERRIDE])
    assert (inst.name, inst.local_asn, inst.router_id, inst.local_port) == ("i", 65001, "10.10.10.10", 1790)
    [peer] = inst.peers  # the autoDiscovery peer has no address: left out
    assert (peer.address, peer.peer_asn, peer.peer_port, peer.local_address) == ("192.168.10.200", 65000, 1179,
                                                                                  "192.168.10.9")
    assert (peer.hold_time, peer.keepalive, peer.graceful_restart, peer.restart_time, peer.ebgp_multihop) == \
        (9, 3, True, 15, 3)
    assert peer.families == ("ipv4/unicast",)
    # Another node: no override (router ID = node IP, no listening port); a missing peer config: Cilium's defaults.
    [other] = node_sessions("k8s-w2", {"bgp": "on"}, "192.168.10.102", [CLUSTER], [], [OVERRIDE])
    assert (other.router_id, other.local_port) == ("192.168.10.102", None)
    assert (other.peers[0].hold_time, other.peers[0].keepalive, other.peers[0].connect_retry,
            other.peers[0].peer_port, other.peers[0].graceful_restart) == (90, 30, 120, 179, False)
    assert node_sessions("k8s-w3", {}, "192.168.10.103", [CLUSTER], [PEER], []) == []  # not selected


def test_exabgp_config_carries_every_session_setting() -> None:
    [inst] = node_sessions("k8s-w1", {"bgp": "on"}, "192.168.10.101", [CLUSTER], [PEER], [OVERRIDE])
    text = config([inst], ["/bin/bridge", "a", "b"], "192.168.10.101")
    for line in ("run /bin/bridge a b;", "neighbor 192.168.10.200 {", "router-id 10.10.10.10;",
                 "local-address 192.168.10.9;", "local-as 65001;", "peer-as 65000;", "hold-time 9;", "connect 1179;",
                 "outgoing-ttl 3;", "capability { graceful-restart 15; }", "ipv4 unicast;", "passive false;"):
        assert line in text, line
    assert "ipv6 unicast" not in text
    [plain] = node_sessions("k8s-w2", {"bgp": "on"}, "192.168.10.102", [CLUSTER], [], [])
    text = config([plain], ["b"], "192.168.10.102")
    assert "local-address 192.168.10.102;" in text and "outgoing-ttl" not in text and "graceful-restart" not in text
    assert "ipv4 unicast;" in text and "ipv6 unicast;" in text  # no families: both negotiated


def test_commands_are_incremental_withdrawals_first() -> None:
    pod = Route("10.0.1.0/24")
    vip = Route("172.16.1.1/32", ("65000:100", "no-export", "65000:1:2"), 200)
    assert route_attributes(vip) == ("next-hop self local-preference 200 community [ 65000:100 no-export ] "
                                     "large-community [ 65000:1:2 ]")
    first = commands({}, {"192.168.10.200": {pod.prefix: pod, vip.prefix: vip}})
    assert first == ["neighbor 192.168.10.200 announce route 10.0.1.0/24 next-hop self",
                     f"neighbor 192.168.10.200 announce route 172.16.1.1/32 {route_attributes(vip)}"]
    old = {"192.168.10.200": {pod.prefix: pod, vip.prefix: vip}}
    assert commands(old, old) == []
    changed = Route("172.16.1.1/32")
    assert commands(old, {"192.168.10.200": {pod.prefix: pod, changed.prefix: changed}}) == \
        ["neighbor 192.168.10.200 announce route 172.16.1.1/32 next-hop self"]
    assert commands(old, {"192.168.10.200": {pod.prefix: pod}, "192.168.20.200": {pod.prefix: pod}}) == [
        "neighbor 192.168.10.200 withdraw route 172.16.1.1/32",
        "neighbor 192.168.20.200 announce route 10.0.1.0/24 next-hop self"]
    assert commands(old, {}) == ["neighbor 192.168.10.200 withdraw route 10.0.1.0/24",
                                 "neighbor 192.168.10.200 withdraw route 172.16.1.1/32"]


def _update(announce: list[str], as_path: list[int], withdraw: list[str] = ()) -> dict:
    return {"type": "update", "neighbor": {
        "address": {"local": "192.168.10.101", "peer": "192.168.10.200"}, "asn": {"local": 65001, "peer": 65000},
        "message": {"update": {"attribute": {"as-path": as_path},
                               "announce": {"ipv4 unicast": {"192.168.10.200": [{"nlri": p} for p in announce]}}
                               if announce else {},
                               "withdraw": {"ipv4 unicast": [{"nlri": p} for p in withdraw]} if withdraw else {}}}}}


def test_bridge_tracks_session_state_and_received_prefixes() -> None:
    state: dict = {}
    up = {"type": "state", "neighbor": {"address": {"peer": "192.168.10.200"}, "state": "up"}}
    assert _apply_event(state, up) and state["192.168.10.200"]["state"] == "up"
    _apply_event(state, _update(["10.0.2.0/24"], [65000, 65001]))  # our own ASN in the path: a loop, dropped
    _apply_event(state, _update(["10.0.3.0/24"], [65000, 65002]))
    assert state["192.168.10.200"]["received"] == ["10.0.3.0/24"]
    _apply_event(state, _update([], [], withdraw=["10.0.3.0/24"]))
    assert state["192.168.10.200"]["received"] == []
    _apply_event(state, _update(["10.0.3.0/24"], [65000]))
    _apply_event(state, {"type": "state", "neighbor": {"address": {"peer": "192.168.10.200"}, "state": "down"}})
    assert state["192.168.10.200"] | {"since": 0} == {"state": "down", "since": 0, "received": [], "reason": ""}
    assert not _apply_event(state, {"type": "notification", "neighbor": {}})


def test_bgp_tables_have_ciliums_columns() -> None:
    peers = render_peers([{"node": "k8s-ctr", "local-asn": 65001, "peer-asn": 65000, "peer-address": "192.168.10.200",
                           "peer-port": 179, "state": "established", "since": 100.0, "families": ["ipv4/unicast"],
                           "received": 2, "advertised": 3}], now=225.0)
    head, row = peers.splitlines()
    assert head.split() == ["Node", "Local", "AS", "Peer", "AS", "Peer", "Address", "Session", "State", "Uptime",
                            "Family", "Received", "Advertised"]
    assert row.split() == ["k8s-ctr", "65001", "65000", "192.168.10.200:179", "established", "2m5s", "ipv4/unicast",
                           "2", "3"]
    adv = render_routes("advertised", [{"node": "k8s-ctr", "asn": 65001, "peer": "192.168.10.200",
                                        "prefix": "10.0.0.0/24", "nexthop": "192.168.10.100", "age": 200.0,
                                        "communities": ["65000:100"], "local-preference": None,
                                        "as-path": [65001]}], now=230.0)
    assert adv.splitlines()[1].split()[:6] == ["k8s-ctr", "65001", "192.168.10.200", "10.0.0.0/24", "192.168.10.100",
                                               "30s"]
    assert "{AsPath: 65001}" in adv and "{Communities: 65000:100}" in adv


def test_seed_bgp_preset_and_router_config() -> None:
    topo = build_topology(config_text=PRESETS["seed-bgp"], config_source="--topology seed-bgp")
    assert [(n.name, n.ip) for n in topo.nodes] == [("k8s-ctr", "192.168.10.100/24"), ("k8s-w1", "192.168.10.101/24"),
                                                   ("k8s-w0", "192.168.20.100/24")]
    assert topo.router is not None and topo.router.ips == ["192.168.10.200/24", "192.168.20.200/24"]
    assert topo.config.bgp_control_plane_enabled
    text = bgpd_config(topo)
    for line in ("router bgp 65000", " no bgp ebgp-requires-policy", " neighbor CILIUM remote-as external",
                 " neighbor 192.168.20.100 peer-group CILIUM", "  maximum-paths 16"):
        assert line in text.splitlines(), line


def test_speaker_failure_and_restarts_reach_membrane_status() -> None:
    page = {"bgp": {"enabled": True, "state": "Failure", "msg": "no speaker", "speaker": {"restarts": 0}}}
    assert failing_components(page) == ["BGP"] and agent_warnings(page) == []
    page = {"bgp": {"enabled": True, "state": "Ok", "speaker": {"restarts": 2, "last-exit": "exit status -9"}}}
    assert failing_components(page) == []
    warnings = agent_warnings(page)
    assert warnings == ["BGP speaker restarted 2 times (last: exit status -9)"]
    text = render(ClusterStatus([Daemon("agent-k8s-w1", "running", True, warnings=warnings)], 0, 0))
    assert any(line.split()[:3] == ["Warnings:", "membrane-agent", "k8s-w1"] for line in text.splitlines())
    assert agent_warnings({"bgp": {"enabled": False}}) == [] and agent_warnings({}) == []
