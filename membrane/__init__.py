"""Membrane: eBPF networking, security and observability for containers, in the mould of Cilium."""
