"""The ``sync-endpoint-labels`` controller: endpoints keep their pod's current labels.

Each pod event anywhere in the cluster triggers it. It used to look at every local endpoint each run
(issue 16: O(n) per pod, O(n²) per burst); now a run looks only at the endpoints of the pods named by
the pod mirror's events since the last run, and at endpoints put since then (the endpoint table's
change log: a pod relabelled while its ADD ran is looked at again on the next run). A full pass still runs every ``FULL_PASS_SECONDS`` (the
controller's periodic run), after a failed run, and on the first run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from membrane.agent.node_network import NodeNetwork
from membrane.store.watch import WatchEvent

FULL_PASS_SECONDS = 30.0


def pod_of_key(key: str) -> tuple[str, str]:
    """``(namespace, name)`` of a pod's store key (``…/Pod/<namespace>/<name>``)."""
    rest, _, name = key.rpartition("/")
    return rest.rpartition("/")[2], name


class EndpointLabelSync:
    def __init__(self, net: NodeNetwork, labels_of: Callable[[str, str], dict[str, str]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._net = net
        self._labels_of = labels_of
        self._clock = clock
        self._lock = threading.Lock()
        self._pods: set[tuple[str, str]] = set()
        self._full = True
        self._last_full = 0.0
        self._ep_version = 0

    def pods_changed(self, events: list[WatchEvent]) -> None:
        """The pod mirror's events: only these pods' endpoints need another look."""
        with self._lock:
            self._pods.update(pod_of_key(ev.kv.key) for ev in events)

    def sync(self) -> None:
        with self._net.lock:
            added, self._ep_version = self._net.endpoints.changed_since(self._ep_version)
            new_pods = {(ep.namespace, ep.pod_name) for key in added or ()
                        if (ep := self._net.endpoints.get(*key)) is not None}
        with self._lock:
            pods, self._pods = self._pods | new_pods, set()
            full = self._full or added is None or self._clock() - self._last_full >= FULL_PASS_SECONDS
            self._full = False
        try:
            if full:
                self._last_full = self._clock()
                self._net.update_all_labels(self._labels_of)
            elif pods:
                self._net.update_all_labels(self._labels_of, pods)
        except BaseException:
            with self._lock:
                self._full = True  # the next run redoes everything
            raise
