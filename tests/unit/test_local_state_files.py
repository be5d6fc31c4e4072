"""The node's state as one file per endpoint (issue 16): a write costs the endpoints that changed, not
the node's endpoint count, and what is on disk after any history of changes and writes loads back as
the table."""

from __future__ import annotations

import json
import os
import random

import pytest

from membrane.agent import local_state
from membrane.agent.local_state import (
    ChangedEndpoints,
    LocalState,
    StateChanges,
    StateError,
    endpoint_file,
    load_state,
    save_state,
)
from membrane.endpoint.model import Endpoint, EndpointTable


def _ep(n: int) -> Endpoint:
    return Endpoint(id=n, container_id=f"c{n}", ifname="eth0", netns=f"/run/netns/p{n}", namespace="default",
                    pod_name=f"p{n}", ipv4=f"10.0.0.{n}", host_ifname=f"lxc{n}", host_ifindex=100 + n,
                    host_mac="aa:bb:cc:dd:ee:01", pod_mac="aa:bb:cc:dd:ee:02", labels={"app": "a"})


def _on_disk(path: str) -> dict[tuple[str, str], dict]:
    return {(d["container_id"], d["ifname"]): d for d in load_state(path).endpoints}


def test_random_histories_leave_on_disk_what_the_table_holds(tmp_path) -> None:
    rng = random.Random(16)
    path = str(tmp_path / "state.json")
    table, changed = EndpointTable(), ChangedEndpoints()
    for step in range(300):
        op = rng.random()
        eps = table.list()
        if op < 0.4 or not eps:
            ep = _ep(table.next_id())
            table.put(ep)
            changed.changed(ep.key)
        elif op < 0.6:
            ep = rng.choice(eps)
            table.remove(*ep.key)
            changed.changed(ep.key)
        else:
            ep = rng.choice(eps)
            ep.identity, ep.labels = step, {"app": str(step)}
            changed.changed(ep.key)
        if rng.random() < 0.3:  # the writer does not write after every change
            save_state(path, StateChanges(None, changed.take(table)))
            assert _on_disk(path) == {ep.key: ep.to_dict() for ep in table.list()}
    save_state(path, StateChanges(None, changed.take(table)))
    assert _on_disk(path) == {ep.key: ep.to_dict() for ep in table.list()}


def test_a_write_touches_the_changed_endpoint_only(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "state.json")
    table, changed = EndpointTable(), ChangedEndpoints()
    for n in range(1, 101):
        table.put(_ep(n))
    changed.changed()  # every endpoint (a start)
    save_state(path, StateChanges({"pod_cidr": "10.0.0.0/24", "router_ip": "10.0.0.1"}, changed.take(table)))
    written: list[str] = []
    real = local_state._write_atomically
    monkeypatch.setattr(local_state, "_write_atomically", lambda p, text: (written.append(p), real(p, text)))
    ep = table.get("c7", "eth0")
    assert ep is not None
    ep.identity = 4242
    changed.changed(ep.key)
    save_state(path, StateChanges(None, changed.take(table)))
    assert [os.path.basename(p) for p in written] == ["c7@eth0.json"]
    assert _on_disk(path)[ep.key]["identity"] == 4242 and len(_on_disk(path)) == 100
    written.clear()
    save_state(path, StateChanges(None, changed.take(table)))  # nothing changed: nothing written
    assert written == []


def test_a_failed_write_is_written_again_by_the_next(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "state.json")
    table, changed = EndpointTable(), ChangedEndpoints()
    table.put(_ep(1))
    changed.changed(("c1", "eth0"))
    taken = changed.take(table)

    def boom(_p: str, _text: str) -> None:
        raise OSError(28, "no space left")

    monkeypatch.setattr(local_state, "_write_atomically", boom)
    with pytest.raises(OSError):
        save_state(path, StateChanges(None, taken))
    monkeypatch.undo()
    changed.again(set(taken))
    save_state(path, StateChanges(None, changed.take(table)))
    assert list(_on_disk(path)) == [("c1", "eth0")]


def test_a_one_file_state_loads_and_its_endpoint_files_win(tmp_path) -> None:
    path = tmp_path / "state.json"
    old = {"pod_cidr": "10.0.0.0/24", "router_ip": "10.0.0.1", "ipam": {"version": 1},
           "endpoints": [_ep(1).to_dict(), _ep(2).to_dict()]}
    path.write_text(json.dumps(old))
    newer = _ep(2)
    newer.identity = 77
    save_state(str(path), StateChanges(None, {newer.key: json.dumps(newer.to_dict())}))
    state = load_state(str(path))
    assert (state.pod_cidr, state.router_ip) == ("10.0.0.0/24", "10.0.0.1")
    assert {(d["container_id"], d["identity"]) for d in state.endpoints} == {("c1", 0), ("c2", 77)}
    # the node part rewritten: the endpoints live in their files from now on
    save_state(str(path), StateChanges({"pod_cidr": "10.0.0.0/24", "router_ip": "10.0.0.1"},
                                       {_ep(1).key: json.dumps(_ep(1).to_dict())}))
    assert "endpoints" not in json.loads(path.read_text())
    assert len(load_state(str(path)).endpoints) == 2


def test_nothing_on_disk_is_an_empty_state_and_leftover_tmp_files_go(tmp_path) -> None:
    path = str(tmp_path / "state.json")
    assert load_state(path) == LocalState()
    os.makedirs(tmp_path / "endpoints")
    (tmp_path / "endpoints" / "c1@eth0.json.tmp").write_text("{half")
    assert load_state(path) == LocalState()
    assert os.listdir(tmp_path / "endpoints") == []


def test_a_damaged_endpoint_file_is_named(tmp_path) -> None:
    os.makedirs(tmp_path / "endpoints")
    (tmp_path / "endpoints" / "c1@eth0.json").write_text("{not json")
    with pytest.raises(StateError, match=r"endpoints/c1@eth0\.json: not valid JSON"):
        load_state(str(tmp_path / "state.json"))
    (tmp_path / "endpoints" / "c1@eth0.json").write_text('{"id": 1}')
    with pytest.raises(StateError, match="c1@eth0.json: expected an endpoint object with container_id and ifname"):
        load_state(str(tmp_path / "state.json"))


def test_file_names_are_the_key_or_a_digest_of_it() -> None:
    assert endpoint_file(("0123abcd", "eth0")) == "0123abcd@eth0.json"
    odd = endpoint_file(("../../etc/passwd", "eth0"))
    assert odd.startswith("h-") and "/" not in odd
    assert endpoint_file(("a b", "eth0")) != endpoint_file(("a", "b eth0"))
