"""The ipcache model: IP/prefix -> (identity, owning node, tunnel endpoint), merged from several
sources by precedence, looked up by longest prefix, rendered like ``cilium-dbg bpf ipcache list``."""
