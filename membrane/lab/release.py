"""The lab's Helm release: its values and configuration in the cluster store, and ``lab upgrade``.

Two keys, written in one etcd transaction, as Cilium keeps its configuration in the ``cilium-config``
ConfigMap and Helm its release (revision and user-supplied values) in a Secret:

    /membrane/<cluster>/config     ClusterConfig (what every daemon reads when it starts)
    /membrane/<cluster>/release    {"revision": N, "values": {...}, "updated": <unix time>}

An upgrade computes the new values (the stored ones with ``--reuse-values``, none without, as Helm
does), resolves them, refuses changes a running lab cannot take, stores the result and updates the
lab record. The agents pick the new configuration up when they restart (membrane.lab.rollout).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from membrane.lab.paths import LabPaths
from membrane.lab.record import LabRecord, load_record
from membrane.lab.topology import resolve_values
from membrane.model import helm_values
from membrane.model.config import ClusterConfig
from membrane.model.errors import ValidationError
from membrane.model.helm_release import upgrade_blockers
from membrane.model.helm_values import Values
from membrane.store.etcd import EtcdClient
from membrane.store.txn import Op, mod_revision_eq, version_eq


class ReleaseError(Exception):
    pass


@dataclass
class Release:
    revision: int
    values: Values
    config: ClusterConfig
    updated: float = 0.0
    mod_revision: int = 0  # of the stored release key (0: none); guards against concurrent upgrades
    warnings: list[str] = field(default_factory=list)


def _keys(cluster: str) -> tuple[str, str]:
    return f"/membrane/{cluster}/config", f"/membrane/{cluster}/release"


def store(client: EtcdClient, config: ClusterConfig, values: Values, revision: int, expect_mod: int = 0) -> None:
    """Write the configuration and the release together, if the release is still the one read."""
    config_key, release_key = _keys(config.cluster_name)
    release = {"revision": revision, "values": values, "updated": time.time()}
    guard = mod_revision_eq(release_key, expect_mod) if expect_mod else version_eq(release_key, 0)
    result = client.txn([guard], [Op.put(config_key, json.dumps(config.to_dict())),
                                  Op.put(release_key, json.dumps(release))])
    if not result.succeeded:
        raise ReleaseError("the release changed while this upgrade ran (another upgrade?); nothing was stored")


def load(client: EtcdClient, cluster: str) -> Release:
    config_key, release_key = _keys(cluster)
    raw_config, raw_release = client.get(config_key), client.get(release_key)
    if raw_config is None:
        raise ReleaseError(f"the cluster store has no configuration at {config_key}")
    config = ClusterConfig.from_dict(json.loads(raw_config.value))
    if raw_release is None:  # a lab created before releases were stored
        return Release(1, {}, config)
    data: dict[str, Any] = json.loads(raw_release.value)
    return Release(int(data.get("revision", 1)), data.get("values") or {}, config, float(data.get("updated", 0)),
                   raw_release.mod_revision)


def _open(lab: str) -> tuple[LabRecord, EtcdClient]:
    record = load_record(lab)
    if record is None:
        raise ReleaseError(f"lab {lab!r} not found")
    return record, EtcdClient(LabPaths(lab).etcd_endpoint)


def current(lab: str) -> Release:
    record, client = _open(lab)
    with client:
        return load(client, record.topology.config.cluster_name)


def plan(running: Release, files: list[Values], sets: list[Values], reuse_values: bool) -> Release:
    """The release an upgrade would store; ValidationError if the values are refused or need a new lab."""
    given = helm_values.combine(files, sets)
    values = helm_values.combine(files, sets, base=running.values if reuse_values else {})
    resolved = resolve_values(values)
    blockers = upgrade_blockers(running.config, resolved.config)
    if blockers:
        hint = "" if reuse_values else " (without --reuse-values every other value returns to its default)"
        raise ValidationError("; ".join(blockers) + hint)
    # Warn about the keys this upgrade gives, not again about the reused ones.
    given_keys = set(helm_values.flatten(given))
    warnings = [text for key, text in resolved.warned.items() if key in given_keys]
    return Release(running.revision + 1, values, resolved.config, warnings=warnings)


def upgrade(lab: str, files: list[Values], sets: list[Values], reuse_values: bool) -> tuple[Release, bool]:
    """Validate and store the new release; returns it and whether the configuration changed."""
    record, client = _open(lab)
    with client:
        running = load(client, record.topology.config.cluster_name)
        new = plan(running, files, sets, reuse_values)
        store(client, new.config, new.values, new.revision, running.mod_revision)
    record.topology.config = new.config
    record.topology.values = new.values
    record.save()
    return new, new.config.to_dict() != running.config.to_dict()
