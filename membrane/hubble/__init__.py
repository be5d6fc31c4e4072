"""Hubble-compatible observability, control-plane side: Flow objects built from datapath events,
the per-node flow ring, FlowFilter semantics and the `hubble observe` output formats. Pure: no
I/O; the gRPC server and relay live in `membrane.hubbleserver`."""
