"""Policy names for Hubble flows: the agent's answer to "which policies decided this verdict?".

The flow pipeline asks once per policy-verdict event (:class:`membrane.hubble.events.PolicyQuestion`);
the answer comes from the policy repository the agent resolves endpoints with
(:func:`membrane.policy.attribution.attribute`), cached per question until the next sync that
changes what the rules resolve to. It runs on the flow thread while the policy controller may be
folding changes in: a question that meets the repository mid-change is answered with no names
rather than a wrong one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from membrane.agent.policy_sync import PolicySync
from membrane.hubble.events import PolicyName, PolicyQuestion
from membrane.policy.attribution import attribute, policy_labels
from membrane.policy.rules import EGRESS, INGRESS, Origin

log = logging.getLogger(__name__)
CACHE_LIMIT = 4096
_NONE: tuple[Sequence[PolicyName], Sequence[str]] = ((), ())


class PolicyNames:
    """Callable as a :data:`membrane.hubble.events.PolicyAttributor`."""

    def __init__(self, policy: PolicySync) -> None:
        self._policy = policy
        self._generation = -1
        self._cache: dict[PolicyQuestion, tuple[Sequence[PolicyName], Sequence[str]]] = {}
        self._revisions: dict[Origin, int] = {}

    def __call__(self, q: PolicyQuestion) -> tuple[Sequence[PolicyName], Sequence[str]]:
        sync = self._policy
        if sync.generation != self._generation:
            self._cache.clear()
            self._revisions = sync.policy_revisions()
            self._generation = sync.generation
        hit = self._cache.get(q)
        if hit is not None:
            return hit
        try:
            answer = self._answer(q)
        except (RuntimeError, KeyError) as exc:  # the repository changed under us: no names this time
            log.debug("policy names for %s not found: %s", q, exc)
            return _NONE
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[q] = answer
        return answer

    def _answer(self, q: PolicyQuestion) -> tuple[Sequence[PolicyName], Sequence[str]]:
        sync = self._policy
        identity = sync.endpoint_identity(q.endpoint_id)
        if identity is None:
            return _NONE
        named = sync.endpoint_named_ports(q.endpoint_id) if q.ingress else {}
        found = attribute(sync.repo.selecting(identity), sync.repo.cache, direction=INGRESS if q.ingress else EGRESS,
                          peer=q.peer_identity, protocol=q.protocol, port=q.port, deny=q.denied,
                          entities=sync.entities, named_ports=named, peer_named_ports=sync.repo.peer_named_ports())
        names = tuple(PolicyName(o.name, o.namespace, o.kind, tuple(policy_labels(o)), max(self._revisions.get(o, 0), 0))
                      for o in found.origins)
        return names, found.logs
