"""Which local endpoints a policy run looks at: the ones that changed, not all of them.

The policy controller runs on every ipcache, identity and endpoint event, so several times per pod
started anywhere in the cluster, and each run went over every local endpoint to find the few whose
policy had to be worked out again (issue 16: O(n) per run, the controller's CPU per pod grew with the
node's endpoint count). A run now looks at the endpoints the endpoint table's change log names (added,
removed, identity changed: ``EndpointTable.touch``), at those resolved for an identity whose policy may
have changed, and at those a failed run left behind. Every endpoint is looked at on the first run, every
``FULL_PASS_SECONDS``, when the change log no longer reaches back, when the caller asks (a full run) and
after a run that failed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from membrane.agent.node_network import NodeNetwork
from membrane.endpoint.model import Endpoint

FULL_PASS_SECONDS = 30.0
_NO_LOCK = threading.Lock()  # for a network without a node lock (tests' fakes), used by one thread


class PolicyEndpoints:
    def __init__(self, net: NodeNetwork, clock: Callable[[], float] = time.monotonic) -> None:
        self._net = net
        self._clock = clock
        self._version = 0
        self._all = True
        self._last_all = 0.0
        self._by_identity: dict[int, set[int]] = {}  # identity -> endpoint IDs resolved for it
        self._identity_of: dict[int, int] = {}  # endpoint ID -> the identity it was resolved for
        self._id_of: dict[tuple[str, str], int] = {}  # endpoint key -> its ID, as resolved
        self._key_of: dict[int, tuple[str, str]] = {}

    def everything(self) -> None:
        """The next ``select`` looks at every endpoint (a run failed half way)."""
        self._all = True

    def select(self, identities: Iterable[int], also: Iterable[int], everything: bool = False,
               ) -> tuple[dict[int, Endpoint], set[int]]:
        """(the endpoints with an identity among those to look at, by ID; the IDs looked at). An ID looked
        at and not among the endpoints is gone, or has no identity any more."""
        table = self._net.endpoints
        changed_since = getattr(table, "changed_since", None)  # a table without a change log: all, always
        with getattr(self._net, "lock", _NO_LOCK):
            keys, self._version = changed_since(self._version) if changed_since is not None else (None, 0)
            now = self._clock()
            if everything or self._all or keys is None or now - self._last_all >= FULL_PASS_SECONDS:
                self._all = False
                self._last_all = now
                endpoints = {ep.id: ep for ep in table.list() if ep.identity}
                return endpoints, set(endpoints) | set(self._identity_of)
            ids = set(also)
            for key in keys:
                old = self._id_of.get(key)
                if old is not None:
                    ids.add(old)
                ep = table.get(*key)
                if ep is not None:
                    ids.add(ep.id)
            for n in identities:
                ids |= self._by_identity.get(n, set())
            endpoints = {i: ep for i in ids if (ep := table.by_id(i)) is not None and ep.identity}
            return endpoints, ids

    def resolved(self, ep: Endpoint) -> None:
        """``ep``'s policy was worked out for its current identity."""
        self.forget(ep.id)
        self._identity_of[ep.id] = ep.identity
        self._by_identity.setdefault(ep.identity, set()).add(ep.id)
        self._id_of[ep.key] = ep.id
        self._key_of[ep.id] = ep.key

    def forget(self, ep_id: int) -> None:
        old = self._identity_of.pop(ep_id, None)
        if old is not None:
            held = self._by_identity[old]
            held.discard(ep_id)
            if not held:
                del self._by_identity[old]
        key = self._key_of.pop(ep_id, None)
        if key is not None and self._id_of.get(key) == ep_id:
            del self._id_of[key]
