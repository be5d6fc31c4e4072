"""Hubble's Observer gRPC API over the network: the per-node server (`ObserverServer`) and the
cluster-wide `Relay`. Edge layer: does network I/O; the pure parts live in `membrane.hubble`."""
