"""The membrane command: kubectl-style resources, cilium-dbg-style introspection, the lab."""
