"""NodeNetwork on a real kernel: concurrent ADDs, injected failures at every stage, DEL, restart.

Everything runs in a scratch node namespace (``dpt-<run id>-node``) with pods in their own
namespaces and the datapath pinned under ``/sys/fs/bpf/membrane/dpt-<run id>``; the fixtures remove
them, also on failure.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable

import pytest

from membrane.agent import node_network as nn_module
from membrane.agent.node_network import NodeNetwork
from membrane.datapath.linux import links, routes
from membrane.datapath.linux.errors import NetError
from membrane.datapath.linux.netns import run_in_netns
from membrane.endpoint.routing import endpoint_route
from membrane.model.naming import host_veth_name

pytestmark = pytest.mark.root
POD_CIDR = "10.77.0.0/24"


class Node:
    """A NodeNetwork whose every call runs in the node namespace (its threads inherit it)."""

    def __init__(self, netns: str, state: str, pin_dir: str) -> None:
        self.netns = netns
        self.net = NodeNetwork(state, pin_dir)
        self.run(self.net.start, POD_CIDR)

    def run(self, fn: Callable, *args: object):
        return run_in_netns(self.netns, fn, *args)

    def add(self, pod_netns: str, name: str):
        return self.run(self.net.add_endpoint, f"cid{name}", "eth0", f"/run/netns/{pod_netns}", "default", name,
                        {"app": "x"})

    def remove(self, name: str):
        return self.run(self.net.remove_endpoint, f"cid{name}", "eth0")

    def link_exists(self, name: str) -> bool:
        return self.run(links.link_exists, host_veth_name(f"cid{name}", "eth0"))

    def leftovers(self) -> dict[str, object]:
        """What a removed or failed endpoint must not leave: IPs, map entries, endpoints."""
        used = {ip: owner for ip, owner in self.net.allocator.used().items() if owner != "router"}
        assert self.net.datapath is not None
        return {"ips": used, "map": list(self.net.datapath.endpoints.keys()), "endpoints": len(self.net.endpoints)}


@pytest.fixture
def node(make_netns: Callable[[str], str], pin_dir: str, tmp_path, lxc_object: str, monkeypatch) -> Node:
    monkeypatch.setenv("MEMBRANE_BPF_DIR", lxc_object.rsplit("/", 1)[0])
    n = Node(make_netns("node"), str(tmp_path / "state.json"), pin_dir)
    yield n
    n.net.close()


def test_concurrent_adds_get_distinct_ips_and_ids_and_dels_leave_nothing(node: Node, make_netns) -> None:
    names = [f"p{i}" for i in range(8)]
    pods = {name: make_netns(name) for name in names}
    results: dict[str, object] = {}

    def add(name: str) -> None:
        results[name] = node.add(pods[name], name)

    threads = [threading.Thread(target=add, args=(name,)) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    eps = [results[name] for name in names]
    assert len({ep.ipv4 for ep in eps}) == 8 and len({ep.id for ep in eps}) == 8
    assert all(node.link_exists(name) for name in names)
    assert sorted(node.net.datapath.endpoints.keys()) == sorted(ep.ipv4 for ep in eps)
    stats = node.net.stats.summary()
    for scope in ("waitingForLock", "ipam", "veth", "endpointMap", "bpfAttach", "route", "persist"):
        assert stats[scope]["count"] == 8, scope
    # ADD again is answered from the table, with the same endpoint
    assert node.add(pods["p0"], "p0").ipv4 == eps[0].ipv4
    for name in names:
        assert node.remove(name) is not None
        assert node.remove(name) is None  # DEL is idempotent
        assert not node.link_exists(name)
    assert node.leftovers() == {"ips": {}, "map": [], "endpoints": 0}


@pytest.mark.parametrize("stage", ["veth", "endpointMap", "bpfAttach", "route", "persist"])
def test_a_failure_at_any_stage_leaves_no_ip_veth_route_or_entry(node: Node, make_netns, monkeypatch,
                                                                  stage: str) -> None:
    pod = make_netns("f")

    def boom(*_a: object, **_k: object) -> None:
        raise NetError(errno.EIO, f"injected failure at {stage}")

    if stage == "veth":
        monkeypatch.setattr(nn_module.pod_link, "configure_inside", boom)  # the pair exists by then
    elif stage == "endpointMap":
        monkeypatch.setattr(type(node.net.datapath.endpoints), "update", boom)
    elif stage == "bpfAttach":
        monkeypatch.setattr(node.net.datapath, "attach_endpoint", boom)
    elif stage == "route":
        real = routes.replace_route

        def route_then_fail(route: object, **kwargs: object) -> None:  # the route exists when the failure comes
            real(route, **kwargs)
            raise NetError(errno.EIO, "injected failure after the route")

        monkeypatch.setattr(nn_module.routes, "replace_route", route_then_fail)
    else:
        monkeypatch.setattr(nn_module, "save_state", boom)
    # a failed map write comes back from the endpoints reconciler as EndpointNotApplied, with the cause
    with pytest.raises((NetError, nn_module.EndpointNotApplied), match="injected failure"):
        node.add(pod, "f")
    monkeypatch.undo()
    assert not node.link_exists("f")
    assert node.leftovers() == {"ips": {}, "map": [], "endpoints": 0}
    ip = node.net.allocator.first  # the router holds .1; a leaked route would name a pod address
    assert not node.run(routes.route_exists, endpoint_route("10.77.0.2", host_veth_name("cidf", "eth0")))
    # and the pod can be added once the cause is gone
    ep = node.add(pod, "f")
    assert ep.ipv4 != ip and node.link_exists("f")


def test_add_after_a_restart_finds_the_endpoint_and_new_adds_do_not_reuse_its_ip(node: Node, make_netns,
                                                                                  tmp_path, pin_dir) -> None:
    a, b = make_netns("a"), make_netns("b")
    first = node.add(a, "a")
    node.net.close()
    again = Node(node.netns, str(tmp_path / "state.json"), pin_dir)
    try:
        assert again.add(a, "a").ipv4 == first.ipv4  # the runtime retrying its ADD gets the same answer
        second = again.add(b, "b")
        assert second.ipv4 != first.ipv4 and second.id != first.id
        assert again.remove("a") is not None and again.remove("b") is not None
        assert again.leftovers() == {"ips": {}, "map": [], "endpoints": 0}
    finally:
        again.net.close()


def test_a_restart_restores_from_the_endpoint_files_and_drops_those_whose_veth_is_gone(
        node: Node, make_netns, tmp_path, pin_dir) -> None:
    # issue 16: one file per endpoint; the IP allocations are rebuilt from them
    a, b = make_netns("a"), make_netns("b")
    first, second = node.add(a, "a"), node.add(b, "b")
    node.net.set_identity(first.container_id, "eth0", 4242)
    node.net.close()
    assert sorted(p.name for p in (tmp_path / "endpoints").iterdir()) == ["cida@eth0.json", "cidb@eth0.json"]
    node.run(links.delete_link, second.host_ifname)  # b's veth went while the agent was away
    again = Node(node.netns, str(tmp_path / "state.json"), pin_dir)
    try:
        kept = again.net.endpoints.get(first.container_id, "eth0")
        assert kept is not None and kept.identity == 4242 and kept.ipv4 == first.ipv4
        assert again.net.endpoints.get(second.container_id, "eth0") is None
        assert again.leftovers()["ips"] == {first.ipv4: "default/a"}  # b's address is free again
        assert sorted(p.name for p in (tmp_path / "endpoints").iterdir()) == ["cida@eth0.json"]
        assert again.remove("a") is not None
        assert list((tmp_path / "endpoints").iterdir()) == []
    finally:
        again.net.close()


def test_an_add_waits_for_identity_and_policy_of_the_current_identity(node: Node, make_netns) -> None:
    ep = node.add(make_netns("w"), "w")
    assert not node.net.wait_regenerated(ep.container_id, "eth0", 0.05)  # no identity yet
    node.net.set_identity(ep.container_id, "eth0", 300)
    node.net.policy_realized(ep.container_id, "eth0", 299)  # a policy computed for an older identity
    assert not node.net.wait_regenerated(ep.container_id, "eth0", 0.05)
    node.net.policy_realized(ep.container_id, "eth0", 300)
    assert node.net.wait_regenerated(ep.container_id, "eth0", 0.05)
    assert node.net.stats.summary()["waitingForIdentity"]["count"] == 1
    node.remove("w")
    assert not node.net.wait_regenerated(ep.container_id, "eth0", 0.01)  # gone with the endpoint


def test_identity_and_policy_start_while_the_adds_state_file_is_written(node: Node, make_netns, monkeypatch) -> None:
    # issue 16: the ADD used to trigger the identity controller only once its state file was on disk
    triggered = threading.Event()
    seen: list[bool] = []
    real = nn_module.save_state

    def slow_save(path: str, state: object) -> None:
        seen.append(triggered.wait(2.0))  # the write of the new endpoint: is its identity work under way?
        real(path, state)

    node.net.on_change = triggered.set
    monkeypatch.setattr(nn_module, "save_state", slow_save)
    ep = node.add(make_netns("o"), "o")
    assert seen and seen[0], "the identity controller was triggered only after the state file was written"
    assert node.net.endpoints.get(ep.container_id, "eth0") is not None


def test_an_add_whose_state_write_fails_after_its_policy_came_does_not_keep_it(node: Node, make_netns,
                                                                                monkeypatch) -> None:
    pod = make_netns("r")

    def controllers() -> None:  # identity and policy arrive while the state file is being written
        ep = node.net.endpoints.get("cidr", "eth0")
        if ep is not None:
            node.net.set_identity("cidr", "eth0", 300)
            node.net.policy_realized("cidr", "eth0", 300)

    def boom(*_a: object, **_k: object) -> None:
        raise NetError(errno.EIO, "injected failure at persist")

    node.net.on_change = controllers
    monkeypatch.setattr(nn_module, "save_state", boom)
    with pytest.raises(NetError, match="injected failure"):
        node.add(pod, "r")
    monkeypatch.undo()
    node.net.on_change = lambda: None
    ep = node.add(pod, "r")  # the runtime retries; this endpoint has no identity or policy yet
    assert not node.net.wait_regenerated(ep.container_id, "eth0", 0.05)
    assert node.leftovers()["endpoints"] == 1


def test_an_add_whose_policy_never_comes_fails_after_its_timeout_and_leaves_nothing(node: Node, make_netns) -> None:
    from membrane.agent.api import APIFailure
    from membrane.agent.cni_service import ERR_TRY_AGAIN, CNIService

    pod = make_netns("t")
    cni = CNIService(node.net, lambda _ns, _pod: {"app": "x"}, lambda: "")
    cni.regeneration_timeout = 0.2  # nobody allocates an identity here: the wait must give up
    body = {"containerID": "cidt", "ifname": "eth0", "netns": f"/run/netns/{pod}",
            "args": {"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "t"}, "netconf": {"cniVersion": "1.0.0"}}
    with pytest.raises(APIFailure) as failure:
        node.run(cni.add, body)
    assert failure.value.status == 503 and failure.value.body["code"] == ERR_TRY_AGAIN
    assert "identity and policy" in failure.value.body["msg"]
    assert not node.link_exists("t")
    assert node.leftovers() == {"ips": {}, "map": [], "endpoints": 0}
    # once identity and policy come, the same ADD answers with the endpoint's address
    def regenerate() -> None:  # what the identity and policy controllers do, once the endpoint exists
        while node.net.endpoints.get("cidt", "eth0") is None:
            time.sleep(0.01)
        node.net.set_identity("cidt", "eth0", 300)
        node.net.policy_realized("cidt", "eth0", 300)

    threading.Thread(target=regenerate, daemon=True).start()
    cni.regeneration_timeout = 10
    result = node.run(cni.add, body)["result"]
    assert result["ips"][0]["address"].endswith("/32") and node.link_exists("t")
