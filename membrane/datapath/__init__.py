"""Datapath adapters: the only code that touches the kernel (netlink, libbpf, bpffs)."""
