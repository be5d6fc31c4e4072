"""The state file's endpoints encoded once per change (issue 16): what ``EncodedEndpoints`` hands the
writer is what encoding the whole table would give, and only changed endpoints are encoded again."""

from __future__ import annotations

import json
import random

import pytest

from membrane.agent.local_state import EncodedEndpoints, LocalState, load_state, save_state
from membrane.endpoint import model
from membrane.endpoint.model import Endpoint, EndpointTable


def _ep(n: int) -> Endpoint:
    return Endpoint(id=n, container_id=f"c{n}", ifname="eth0", netns=f"/run/netns/p{n}", namespace="default",
                    pod_name=f"p{n}", ipv4=f"10.0.0.{n}", host_ifname=f"lxc{n}", host_ifindex=100 + n,
                    host_mac="aa:bb:cc:dd:ee:01", pod_mac="aa:bb:cc:dd:ee:02", labels={"app": "a"})


def _decoded(encoded: list[str]) -> dict[tuple[str, str], dict]:
    return {(d["container_id"], d["ifname"]): d for d in map(json.loads, encoded)}


def test_random_changes_give_what_a_full_encoding_gives() -> None:
    rng = random.Random(16)
    table, enc = EndpointTable(), EncodedEndpoints()
    for step in range(300):
        op = rng.random()
        eps = table.list()
        if op < 0.4 or not eps:
            ep = _ep(table.next_id())
            table.put(ep)
            enc.changed(ep.key)
        elif op < 0.6:
            ep = rng.choice(eps)
            table.remove(*ep.key)
            enc.changed(ep.key)
        else:
            ep = rng.choice(eps)
            ep.identity, ep.labels = step, {"app": str(step)}
            enc.changed(ep.key)
        if rng.random() < 0.3:  # the writer does not take a snapshot after every change
            assert _decoded(enc.take(table)) == {ep.key: ep.to_dict() for ep in table.list()}
    assert _decoded(enc.take(table)) == {ep.key: ep.to_dict() for ep in table.list()}


def test_only_the_changed_endpoint_is_encoded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    table, enc = EndpointTable(), EncodedEndpoints()
    for n in range(1, 101):
        table.put(_ep(n))
    enc.take(table)  # the first take encodes all of them
    calls: list[int] = []
    real = model.Endpoint.to_dict

    def counting(self: Endpoint) -> dict:
        calls.append(self.id)
        return real(self)

    monkeypatch.setattr(model.Endpoint, "to_dict", counting)
    ep = table.by_id(7)
    assert ep is not None
    ep.identity = 4242
    enc.changed(ep.key)
    out = enc.take(table)
    assert calls == [7]
    assert _decoded(out)[ep.key]["identity"] == 4242 and len(out) == 100
    calls.clear()
    enc.take(table)  # nothing changed: nothing encoded
    assert calls == []
    enc.changed()  # "any endpoint may have changed": all again
    enc.take(table)
    assert len(calls) == 100


def test_an_encoded_state_file_loads_like_a_plain_one(tmp_path) -> None:
    table, enc = EndpointTable(), EncodedEndpoints()
    for n in (1, 2, 3):
        table.put(_ep(n))
    ipam = {"version": 1, "cidr": "10.0.0.0/24", "last_allocated": "10.0.0.3", "used": {"10.0.0.1": "router"}}
    plain, fast = str(tmp_path / "plain.json"), str(tmp_path / "fast.json")
    save_state(plain, LocalState("10.0.0.0/24", "10.0.0.1", ipam, table.snapshot()))
    save_state(fast, LocalState("10.0.0.0/24", "10.0.0.1", ipam, encoded=enc.take(table)))
    assert json.loads((tmp_path / "fast.json").read_text()) == json.loads((tmp_path / "plain.json").read_text())
    assert load_state(fast) == load_state(plain)
    empty = str(tmp_path / "empty.json")
    save_state(empty, LocalState(encoded=EncodedEndpoints().take(EndpointTable())))
    assert load_state(empty) == LocalState()
