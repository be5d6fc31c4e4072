"""Network policy: the internal rule model, the selector cache and per-endpoint resolution.

Pure Python without I/O. ``rules`` / ``knp`` turn validated CiliumNetworkPolicy,
CiliumClusterwideNetworkPolicy and NetworkPolicy objects into :class:`~membrane.policy.rules.Rule`
values; ``selectorcache`` keeps selector -> identities current as identities come and go;
``resolve`` computes an endpoint's map-ready entries and the verdict the datapath gives;
``simulate`` compares two policy sets over the running pods.
"""
