"""The lab's Deployment controller: keeps ``replicas`` pods of each Deployment's template.

Pod names and replacement on template change come from membrane.model (named like Kubernetes:
``<deployment>-<pod-template-hash>-<suffix>``); status counts follow kubectl's columns.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

from membrane.model.deployment import deployment_status, pods_for_deployment
from membrane.store.resources import ResourceStore

log = logging.getLogger(__name__)

BATCH = 100  # objects per etcd transaction (etcd's default limit is 128 operations)


class DeploymentController:
    def __init__(self, store: ResourceStore) -> None:
        self.store = store
        self.rng = random.Random()

    def sync(self, deployments: list[dict[str, Any]], pods: list[dict[str, Any]],
             place: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
             created: Callable[[list[dict[str, Any]]], None] | None = None) -> None:
        """``place(pod)``: the pod as it is to be created (the kubelet binds it to a node here, so a new
        pod is written once, not created, then bound, then given its first status: every pod write is
        decoded by every pod watcher); ``created(stored)``: the stored pods of each batch."""
        live = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in deployments}
        for deploy in deployments:
            owned = [p for p in pods if _owner(p) == (deploy["metadata"]["namespace"], deploy["metadata"]["name"])]
            to_create, to_delete = pods_for_deployment(deploy, owned, self.rng)
            if place is not None:
                to_create = [place(pod) for pod in to_create]
            for i in range(0, len(to_create), BATCH):
                stored = self.store.apply_many(to_create[i:i + BATCH])
                if created is not None:
                    created([obj for obj, _verdict in stored])
            ns = deploy["metadata"]["namespace"]
            for i in range(0, len(to_delete), BATCH):
                self.store.delete_many([("core", "Pod", ns, name) for name in to_delete[i:i + BATCH]])
            self._status(deploy, owned)
        for pod in pods:  # garbage-collect pods whose Deployment is gone
            owner = _owner(pod)
            if owner is not None and owner not in live:
                self.store.delete_many([("core", "Pod", pod["metadata"]["namespace"], pod["metadata"]["name"])])

    def _status(self, deploy: dict[str, Any], owned: list[dict[str, Any]]) -> None:
        status = deployment_status(deploy, owned)
        want = int(deploy.get("spec", {}).get("replicas", 1))
        if status["readyReplicas"] < want:
            status["unavailableReplicas"] = want - status["readyReplicas"]
        if deploy.get("status") != status:
            try:  # a compare-and-swap on the revision read, without put_object's GET first
                if not self.store.replace_many([(deploy, {**deploy, "status": status})])[0]:
                    log.debug("deployment status not written: changed meanwhile")
            except Exception as exc:
                log.debug("deployment status not written: %s", exc)


def _owner(pod: dict[str, Any]) -> tuple[str, str] | None:
    for ref in pod.get("metadata", {}).get("ownerReferences", []) or []:
        if ref.get("kind") == "Deployment":
            return (pod["metadata"]["namespace"], ref["name"])
    return None
