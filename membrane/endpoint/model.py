"""An endpoint: one pod interface the agent manages, and the table of them.

Endpoint IDs are small integers local to a node (1..4095, like Cilium's), stable for the life of the
endpoint and persisted with it so an agent restart finds the same IDs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field, fields
from typing import Any

MAX_ENDPOINT_ID = 4095

STATE_WAITING_FOR_IDENTITY = "waiting-for-identity"
STATE_READY = "ready"
STATE_DISCONNECTING = "disconnecting"


@dataclass
class Endpoint:
    id: int
    container_id: str
    ifname: str
    netns: str
    namespace: str
    pod_name: str
    ipv4: str
    host_ifname: str
    host_ifindex: int
    host_mac: str
    pod_mac: str
    labels: dict[str, str] = field(default_factory=dict)
    state: str = STATE_READY
    identity: int = 0
    policy_ingress: bool = False  # ingress policy enforced
    policy_egress: bool = False

    @property
    def policy_enabled(self) -> str:
        """Cilium's ``policy-enabled`` word: none, ingress, egress or both."""
        return {(False, False): "none", (True, False): "ingress", (False, True): "egress",
                (True, True): "both"}[(self.policy_ingress, self.policy_egress)]

    @property
    def key(self) -> tuple[str, str]:
        return (self.container_id, self.ifname)

    @property
    def pod_key(self) -> str:
        return f"{self.namespace}/{self.pod_name}"

    def to_dict(self) -> dict[str, Any]:
        """A plain copy (not ``dataclasses.asdict``, whose deep copy made the state file O(n) slow per pod)."""
        out = {name: getattr(self, name) for name in _FIELDS}
        out["labels"] = dict(self.labels)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Endpoint:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


_FIELDS = tuple(f.name for f in fields(Endpoint))


LOG_SLACK = 1024


class EndpointTable:
    """The node's endpoints, by (container ID, ifname), with ID allocation. Not thread-safe: the agent locks."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], Endpoint] = {}
        # by ID and by IP (neither changes in an endpoint's life): a flow or a pod event looks one up per
        # event, and a pass over every endpoint for it was O(n) per event (issue 16)
        self._by_id: dict[int, Endpoint] = {}
        self._by_ip: dict[str, Endpoint] = {}
        # Which endpoints were put or removed, newest last, with the version of that change: controllers
        # ask ``changed_since`` for the endpoints that changed instead of going over all of them.
        self.version = 0
        self._log: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._forgotten = 0  # changes up to this version may be missing from the log

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, container_id: str, ifname: str) -> Endpoint | None:
        return self._by_key.get((container_id, ifname))

    def by_ip(self, ip: str) -> Endpoint | None:
        return self._by_ip.get(ip)

    def by_id(self, ep_id: int) -> Endpoint | None:
        return self._by_id.get(ep_id)

    def list(self) -> list[Endpoint]:
        return sorted(self._by_key.values(), key=lambda ep: ep.id)

    def next_id(self, exclude: Collection[int] = ()) -> int:
        """The lowest free ID, skipping ``exclude`` (IDs of endpoints still being created)."""
        for candidate in range(1, MAX_ENDPOINT_ID + 1):
            if candidate not in self._by_id and candidate not in exclude:
                return candidate
        raise RuntimeError("no endpoint IDs left on this node")

    def put(self, ep: Endpoint) -> None:
        old = self._by_key.get(ep.key)
        if old is not None:
            self._unindex(old)
        self._by_key[ep.key] = ep
        self._by_id[ep.id] = ep
        self._by_ip[ep.ipv4] = ep
        self._changed(ep.key)

    def remove(self, container_id: str, ifname: str) -> Endpoint | None:
        ep = self._by_key.pop((container_id, ifname), None)
        if ep is not None:
            self._unindex(ep)
            self._changed(ep.key)
        return ep

    def touch(self, key: tuple[str, str]) -> None:
        """Endpoint ``key`` changed in place (its identity): ``changed_since`` names it again."""
        if key in self._by_key:
            self._changed(key)

    def _unindex(self, ep: Endpoint) -> None:
        if self._by_id.get(ep.id) is ep:
            del self._by_id[ep.id]
        if self._by_ip.get(ep.ipv4) is ep:
            del self._by_ip[ep.ipv4]

    def _changed(self, key: tuple[str, str]) -> None:
        self.version += 1
        self._log[key] = self.version
        self._log.move_to_end(key)
        if len(self._log) > 2 * len(self._by_key) + LOG_SLACK:  # keys of endpoints long gone
            while len(self._log) > len(self._by_key) + LOG_SLACK // 2:
                _key, self._forgotten = self._log.popitem(last=False)

    def changed_since(self, version: int) -> tuple[list[tuple[str, str]] | None, int]:
        """The keys of endpoints put, touched or removed after ``version`` (newest first) and the current version;
        None instead of the keys if the log no longer reaches back that far (then look at all)."""
        if version < self._forgotten:
            return None, self.version
        out = []
        for key in reversed(self._log):
            if self._log[key] <= version:
                break
            out.append(key)
        return out, self.version

    def snapshot(self) -> list[dict[str, Any]]:
        return [ep.to_dict() for ep in self.list()]

    @classmethod
    def restore(cls, items: list[dict[str, Any]]) -> EndpointTable:
        table = cls()
        for item in items:
            table.put(Endpoint.from_dict(item))
        return table
