"""The node daemon (membrane-agent): composition root, local REST API on a unix socket."""
