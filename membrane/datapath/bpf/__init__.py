"""libbpf through ctypes: open and load BPF objects, pin and open maps, attach tc programs."""
