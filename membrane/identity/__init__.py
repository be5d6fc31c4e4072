"""Security identities: Cilium's label model, reserved identities and entities, the identity-relevant
label filter, the cluster-wide numeric identity allocator (over an abstract KV store) and node-local
CIDR identities. Pure logic: no I/O except through the KV backend handed to the allocator."""
