"""One module per BPF map: ctypes mirrors of keys and values, defined once in bpf/lib/maps.h."""
